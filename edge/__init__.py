"""The HTTP edge: the DRF views of every API address and the request flows
(gate chains) they run, above governance (docs/ARCHITECTURE.md "Layers").
A plain package, no models: what it serves is in edge/urls.py."""
