"""Attacks on the smoothed classifier g: the empirical side of a certificate (an upper bound on g's robustness where
CERTIFY gives a lower one).

>>> from rs_core.attacks import attack_smoothed, AttackResult, AttackRun
"""

from rs_core.attacks.smoothed import METHODS, AttackProgress, AttackResult, AttackRun, attack_smoothed, has_gradients
from rs_core.smoothing.seeding import attack_seed

__all__ = ["METHODS", "AttackProgress", "AttackResult", "AttackRun", "attack_seed", "attack_smoothed",
           "has_gradients"]
