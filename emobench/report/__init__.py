"""Report: figures and tables built from measurement and analysis results."""
