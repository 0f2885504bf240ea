"""Users' Sieve scripts on the source server: read from files or over ManageSieve, parsed with
sievelib into the neutral tree of model/sieve.py (sievelib lives in this package only)."""
