"""Reports across finished runs: reading run folders (runs), the numbers (tables, pure), the flags
against collapse, the figures (plots, pure), the sections on labels and the relabel gallery,
documents as Markdown, HTML and plain-text tables, and the `lionfer report` command that puts
them in order (report_command). A run's own summary files are written during training, not here.
"""
