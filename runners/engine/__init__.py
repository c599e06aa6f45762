"""The copy engine: waves of mailboxes, folders, and the fetch → append pipeline."""
