"""WSGI entry point. Fails closed: before serving, the process runs every
system check plus the start-up-only ones (migrations applied, profiles
loaded and matching the fingerprint lock, audit triggers in place) and
refuses to start, naming the problem, if any fails."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veritta_site.settings")

application = get_wsgi_application()

from veritta_site.startup import assert_ready_to_serve  # noqa: E402

assert_ready_to_serve()

# PostgreSQL: this process is a standby sequencer of the batched audit write
# path, so records are sequenced within the merge delay even when no request
# comes along to do it (audit/chain.py). Started here, in the worker: threads
# do not survive a fork.
from audit.chain import start_sequencer  # noqa: E402

start_sequencer()
