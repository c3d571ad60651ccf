"""Pipeline stages: fetch, probe, plan, encode, verify, publish (one module per stage)."""
