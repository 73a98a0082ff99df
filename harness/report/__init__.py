"""Reports from stored results: the Markdown/HTML report, its tables and figures, and the
publication figures and LaTeX tables (`wsfm-bench figures`). No torch."""
