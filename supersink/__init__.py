"""The supersink service: consume pointers -> fetch and verify -> ledger -> completeness -> load -> commit."""
