"""Whole datasets: sources, image folders, the result store (reader, writer, integrity),
the resumable run, the Ray backend and trust scores over a store."""
