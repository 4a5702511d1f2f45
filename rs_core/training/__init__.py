"""Training with noise: one loop (:mod:`rs_core.training.loop`) behind the base classifiers' and the
denoisers' recipes. Seeded, resumable after any epoch, one CSV row per epoch."""
