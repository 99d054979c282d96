"""Data synthesis: teachers, trajectories with self-correction (paper §3), the resumable run, importers."""
