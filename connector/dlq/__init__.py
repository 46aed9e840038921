"""The dead-letter topic: publish, read back (view), inspect, replay; the ledger of letters."""
