"""ReportLab documents: one page template shared by every report."""
