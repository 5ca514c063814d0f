"""veritta-verify: check Verittà receipts and proofs with no server (docs/VERIFYING.md)."""

from veritta_verify.core import Rejected, check_consistency_document, check_inclusion, parse_key

__all__ = ["Rejected", "check_consistency_document", "check_inclusion", "parse_key"]
