"""The delivery contract: source, checkpoint, worker, supervisor."""
