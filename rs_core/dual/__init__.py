"""Dual randomized smoothing (Sun, Mao & Vechev): the two-stage smoothed classifier, its σ-estimators
(trained networks and confidence routers) and their training rounds."""
