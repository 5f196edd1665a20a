"""Reports (DESIGN §8): the signed body, what changed between reports, report files, incident
drafts, and `render/` for text, Markdown, CSV and HTML."""
