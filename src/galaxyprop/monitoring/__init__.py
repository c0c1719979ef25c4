"""Watching for domain shift between survey fields: Evidently drift reports (monitoring.drift) on
samples drawn the same way from each field (monitoring.samples)."""
