"""Where panels come from: aggregated tables, UCDP GED event files, downloads."""
