"""QA inspection over the state DB: runs, stores, records, diffs, export and the HTML report."""
