"""Renderings of findings and reports for people and scripts: text, Markdown, CSV, and the
HTML page from Jinja2 templates."""
