"""Hardware twin: runs scenarios for real (real PQC, sockets, processes). Shares only sim's data model."""
