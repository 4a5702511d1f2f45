"""Deliberately broken copies of rs_core: each soundness or contract test must fail on the bug it exists to catch.

Run ``make mutants`` (or ``python tests/mutation_check.py [NAME …]``). For each mutant the
working tree is copied to a temporary folder, one line of code is broken there, and the tests
named for that mutant are run on the copy; a mutant that leaves them green is reported as
SURVIVED and the script exits with 1. Not part of ``make test``: it runs the slow exact-law
tests once per mutant (a few minutes in all).

Known limit, measured: a mixture whose weight is not normalized (off by the Beta mass on
[floor, 1], 0.75 for the Beta(6, 4) of the stream test) is *not* detected by the stream's exact-law
test alone; the deterministic test against the independently integrated statistic
(tests/test_stats.py) catches it, and is the test listed for it here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("stream bound at 2α", "rs_core/smoothing/stream.py",
           "self.n, self.alpha,\n", "self.n, 2 * self.alpha,\n",
           ("tests/test_stream.py::test_stream_false_certificates_follow_their_exact_law_at_the_batch_granularity",)),
    Mutant("anytime bound at 1.5α (any caller)", "rs_core/smoothing/stats.py",
           "threshold = math.log(1.0 / alpha)", "threshold = math.log(1.0 / (1.5 * alpha))",
           ("tests/test_stats.py::test_anytime_bound_is_the_root_of_an_independently_computed_mixture",)),
    Mutant("mixture weight not normalized", "rs_core/smoothing/stats.py",
           "            - np.log(special.betainc(b, a, 1.0 - c))\n", "",
           ("tests/test_stats.py::test_anytime_bound_is_the_root_of_an_independently_computed_mixture",)),
    Mutant("mixture renormalized per p (mis-scaled)", "rs_core/smoothing/stats.py",
           "np.log(special.betainc(b, a, 1.0 - c))", "np.log(special.betainc(b, a, upper))",
           ("tests/test_stats.py::test_anytime_bound_is_the_root_of_an_independently_computed_mixture",)),
    Mutant("mixture prior scaled (b doubled)", "rs_core/smoothing/stats.py",
           "    a, b, c = mixture.a, mixture.b, mixture.floor\n    f = n - k",
           "    a, b, c = mixture.a, 2 * mixture.b, mixture.floor\n    f = n - k",
           ("tests/test_stats.py::test_anytime_bound_is_the_root_of_an_independently_computed_mixture",)),
    Mutant("stream class chosen from its own estimation votes", "rs_core/smoothing/stream.py",
           "            self.n += step\n",
           "            self.n += step\n            self.top_class = int(self.counts.argmax())\n",
           ("tests/test_stream.py::test_the_stream_bounds_the_selected_class_with_fresh_votes_only",
            "tests/test_stream.py::test_stream_false_certificates_follow_their_exact_law_at_the_batch_granularity")),
    Mutant("stream class chosen from its own estimation votes (exact law alone)", "rs_core/smoothing/stream.py",
           "            self.n += step\n",
           "            self.n += step\n            self.top_class = int(self.counts.argmax())\n",
           ("tests/test_stream.py::test_stream_false_certificates_follow_their_exact_law_at_the_batch_granularity",)),
    Mutant("mixture prior scaled, b doubled (exact law alone)", "rs_core/smoothing/stats.py",
           "    a, b, c = mixture.a, mixture.b, mixture.floor\n    f = n - k",
           "    a, b, c = mixture.a, 2 * mixture.b, mixture.floor\n    f = n - k",
           ("tests/test_stream.py::test_stream_false_certificates_follow_their_exact_law_at_the_batch_granularity",)),
    Mutant("stream reuses the selection votes in the bound", "rs_core/smoothing/stream.py",
           "acc = torch.zeros(sampler.num_classes, dtype=torch.int64, device=sampler.device)",
           "acc = torch.as_tensor(selection, device=sampler.device).clone()",
           ("tests/test_stream.py::test_the_stream_bounds_the_selected_class_with_fresh_votes_only",)),
    Mutant("CERTIFY Clopper–Pearson at 2α", "rs_core/smoothing/smooth.py",
           "c_a], n, alpha))", "c_a], n, 2 * alpha))",
           ("tests/test_certify.py::test_certify_on_linear_oracle_matches_exact_law",)),
    Mutant("CERTIFY selects from the estimation votes", "rs_core/smoothing/smooth.py",
           "c_a = selection.argmax(axis=1)", "c_a = estimation.argmax(axis=1)",
           ("tests/test_certify.py::test_certify_on_linear_oracle_matches_exact_law",)),
    Mutant("dual RS: both stages at the full α", "rs_core/dual/smooth.py",
           "return alpha, alpha * split, alpha - alpha * split", "return alpha, alpha, alpha",
           ("tests/test_dual.py",)),
    Mutant("seed keeps only its low 32 bits", "rs_core/smoothing/seeding.py",
           "words = np.random.SeedSequence(seed).generate_state", "words = np.random.SeedSequence(seed % 2**32).generate_state",
           ("tests/test_seeding.py",)),
    Mutant("dual stream seeds stage 2 unlike the batch path", "rs_core/dual/smooth.py",
           "seed=stage_seed(self.seed, 2, cert1.prediction))", "seed=stage_seed(self.seed, 2, 0))",
           ("tests/test_dual.py::test_same_seed_same_votes_in_the_batch_path_the_stream_and_predict",)),
    Mutant("label cache key ignores the experts", "rs_core/dual/estimator.py",
           '"experts": [[float(s), m if isinstance(m, str) else module_fingerprint(m)]',
           '"experts": [[float(s), ""]', ("tests/test_sigma_estimator.py",)),
    Mutant("noise drawn in the model's dtype", "rs_core/smoothing/sampling.py",
           "self.noise_dtype = torch.promote_types(torch.float32, self.model_dtype)",
           "self.noise_dtype = self.model_dtype",
           ("tests/test_sampling.py::test_noise_is_drawn_and_added_in_float32_and_cast_after_adding",)),
    Mutant("radii rounded to nearest", "rs_core/rounding.py",
           "rounding=ROUND_FLOOR", "rounding=ROUND_HALF_EVEN", ("tests/test_rounding.py",)),
    # The error contract for user input: each guard removed must be caught by the fuzz tests.
    Mutant("checkpoint: decoder errors other than UnpicklingError escape", "rs_core/models/checkpoints.py",
           "    except Exception as err:  # KeyError, IndexError, RuntimeError, … from hostile bytes",
           "    except (OSError, RuntimeError) as err:", ("tests/test_fuzz_checkpoints.py",)),
    Mutant("checkpoint: compressed zip members accepted", "rs_core/models/checkpoints.py",
           "if m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size]",
           "if False]", ("tests/test_fuzz_checkpoints.py",)),
    Mutant("checkpoint: stride-0 views accepted", "rs_core/models/checkpoints.py",
           "if t.numel() * t.element_size() > t.untyped_storage().nbytes():", "if False:",
           ("tests/test_fuzz_checkpoints.py",)),
    Mutant("checkpoint: NaN weights accepted", "rs_core/models/checkpoints.py",
           "if t.is_floating_point() and not bool(torch.isfinite(t).all()):", "if False:",
           ("tests/test_fuzz_checkpoints.py",)),
    Mutant("image: decoder errors at open escape", "rs_core/data.py",
           "    except Exception as err:  # noqa: BLE001 — hostile headers make decoders raise OSError, SyntaxError, …",
           "    except SyntaxError as err:", ("tests/test_fuzz_images.py",)),
    Mutant("image: EXIF kept on the returned image", "rs_core/data.py",
           "return Image.fromarray(np.asarray(plain), plain.mode)", "return plain",
           ("tests/test_fuzz_images.py",)),
    Mutant("log: csv's own errors escape", "rs_core/logs/certify_logs.py",
           'with reading(f"log: {name}", f"line {reader.line_num + 1} is not tab-separated text"):',
           "if True:", ("tests/test_fuzz_logs.py",)),
    Mutant("log: NaN radius accepted", "rs_core/logs/certify_logs.py",
           "    if not math.isfinite(radius) or radius < 0:", "    if radius < 0:", ("tests/test_fuzz_logs.py",)),
    Mutant("cli: --N takes any integer", "rs_core/cli/args.py",
           "    if not 1 <= value <= 10**12:", "    if False:", ("tests/test_fuzz_cli_args.py",)),
    Mutant("sweep best mode at α per σ (no Bonferroni)", "rs_core/smoothing/sweep.py",
           "self.alpha_each = self.alpha / k if best else self.alpha",
           "self.alpha_each = self.alpha if best else self.alpha",
           ("tests/test_sweep.py::test_the_best_sigma_is_wrong_at_most_alpha_and_follows_its_exact_law",)),
    Mutant("playground CERTIFY at 3α", "rs_core/smoothing/playground.py",
           ".certify(x, n0=n0, n=n, alpha=alpha, seed=seed)",
           ".certify(x, n0=n0, n=n, alpha=min(0.5, 3 * alpha), seed=seed)",
           ("tests/test_playground.py::test_the_certified_ball_exceeds_the_true_distance_no_more_often_than_its_exact_law",)),
    Mutant("denoised smoothing skips the denoiser", "rs_core/models/denoisers.py",
           "return self.classifier(self.denoiser(x))", "return self.classifier(x)",
           ("tests/test_denoise.py::test_certificates_through_a_composed_model_follow_the_exact_law",)),
    Mutant("adaptive CERTIFY reads Clopper–Pearson at every look", "rs_core/smoothing/adaptive.py",
           "    return anytime_lower_bound_complement(k, n, alpha, mixture)\n",
           "    from .stats import clopper_pearson_lower_complement\n"
           "    return float(clopper_pearson_lower_complement(k, n, alpha)) if mixture is DEFAULT_MIXTURE "
           "else anytime_lower_bound_complement(k, n, alpha, mixture)\n",
           ("tests/test_adaptive.py::test_adaptive_false_certificates_follow_their_exact_law",)),
    Mutant("adaptive CERTIFY counts the selection votes in the bound", "rs_core/smoothing/adaptive.py",
           "            item.counts = np.zeros_like(votes)\n",
           "            item.counts = votes.copy()\n            item.n = self.n0\n",
           ("tests/test_adaptive.py::test_the_class_comes_from_the_selection_votes_which_never_enter_the_bound",)),
    Mutant("adaptive CERTIFY: noise drawn per batch piece (packing shows)", "rs_core/smoothing/adaptive.py",
           "        if item.staging is None and size == item.chunk:",
           "        if True:",
           ("tests/test_adaptive.py::test_refilled_batches_give_each_input_its_own_votes",)),
    Mutant("resume: a row cut short by the kill is kept", "rs_core/logs/resumable.py",
           "        if len(fields) != len(header):\n            continue\n", "",
           ("tests/test_resumable.py::test_merge_keeps_complete_rows_once_sorted_and_removes_the_parts",)),
    Mutant("resume: settings of the old log not compared", "rs_core/logs/resumable.py",
           "        if differ:\n            what", "        if False:\n            what",
           ("tests/test_resumable.py::test_a_log_made_with_other_settings_is_refused_and_left_alone",)),
    Mutant("selection stopped midway still picks a class", "rs_core/smoothing/stream.py",
           "        if drawn < self.n0:  # stopped during selection", "        if False:  # stopped during selection",
           ("tests/test_stream.py::test_stop_during_selection_ends_promptly_and_abstains",)),
    Mutant("batch-size probe draws from the run's generator", "rs_core/smoothing/stream.py",
           "                                                 self.batch_seconds, autocast=sampler.autocast)\n",
           "                                                 self.batch_seconds, autocast=sampler.autocast)\n"
           "            sampler.sample(1)\n",
           ("tests/test_stream.py::test_selection_in_batches_draws_the_same_noise_as_one_call_and_a_recorded_batch_reproduces",)),
    # Soundness paths with no test before issue 25.
    Mutant("dual RS: final radius ignores R_σ", "rs_core/dual/smooth.py",
           "prediction, radius = stage2.prediction, min(r_sigma, r_class)",
           "prediction, radius = stage2.prediction, r_class",
           ("tests/test_dual.py::test_the_final_radius_limited_by_the_sigma_certificate_follows_its_exact_law",)),
    Mutant("dual RS: final radius max(R_σ, R_c)", "rs_core/dual/smooth.py",
           "prediction, radius = stage2.prediction, min(r_sigma, r_class)",
           "prediction, radius = stage2.prediction, max(r_sigma, r_class)",
           ("tests/test_dual.py::test_the_final_radius_limited_by_the_sigma_certificate_follows_its_exact_law",)),
    Mutant("dual RS: stage_seed ignores the stage and the expert", "rs_core/dual/smooth.py",
           "return derive_seed(seed, stage, expert)", "return derive_seed(seed, 0, 0)",
           ("tests/test_dual.py::test_stage_seeds_differ_between_the_stages_the_experts_and_the_parent_seeds",)),
    Mutant("dual RS: stage_seed ignores the expert", "rs_core/dual/smooth.py",
           "return derive_seed(seed, stage, expert)", "return derive_seed(seed, stage)",
           ("tests/test_dual.py::test_each_stage_and_each_expert_draws_its_own_noise",)),
    Mutant("dual RS: stage_seed ignores the stage", "rs_core/dual/smooth.py",
           "return derive_seed(seed, stage, expert)", "return derive_seed(seed, expert)",
           ("tests/test_dual.py::test_each_stage_and_each_expert_draws_its_own_noise",)),
    Mutant("dual RS: stage 2 reuses stage 1's seed", "rs_core/dual/smooth.py",
           "alpha_class, seed=stage_seed(seed, 2, k))", "alpha_class, seed=stage_seed(seed, 1))",
           ("tests/test_dual.py::test_each_stage_and_each_expert_draws_its_own_noise",)),
    Mutant("dual RS: every expert gets expert 0's seed", "rs_core/dual/smooth.py",
           "alpha_class, seed=stage_seed(seed, 2, k))", "alpha_class, seed=stage_seed(seed, 2, 0))",
           ("tests/test_dual.py::test_each_stage_and_each_expert_draws_its_own_noise",)),
    Mutant("dual RS: stage 1 seeded as expert 0's stage 2", "rs_core/dual/smooth.py",
           "stage1 = self.estimator.certify_many(xs, n0, n, alpha_sigma, seed=stage_seed(seed, 1))",
           "stage1 = self.estimator.certify_many(xs, n0, n, alpha_sigma, seed=stage_seed(seed, 2, 0))",
           ("tests/test_dual.py::test_each_stage_and_each_expert_draws_its_own_noise",)),
    Mutant("PREDICT at 2α", "rs_core/smoothing/smooth.py",
           "int(order[0]) if p_value <= alpha else ABSTAIN", "int(order[0]) if p_value <= 2 * alpha else ABSTAIN",
           ("tests/test_certify.py::test_predict_on_linear_oracle_follows_its_exact_law_at_alpha_and_not_at_2alpha",)),
    Mutant("adaptive futility bound read at α, not futility_alpha", "rs_core/smoothing/adaptive.py",
           "item.p_upper = _complement(n - k, n, self.futility_alpha, UPPER_MIXTURE)",
           "item.p_upper = _complement(n - k, n, self.alpha, UPPER_MIXTURE)",
           ("tests/test_adaptive.py::test_the_futility_rule_gives_up_at_its_own_level_and_the_certificate_keeps_alpha",)),
    Mutant("adaptive futility bound read at α (exact law alone)", "rs_core/smoothing/adaptive.py",
           "item.p_upper = _complement(n - k, n, self.futility_alpha, UPPER_MIXTURE)",
           "item.p_upper = _complement(n - k, n, self.alpha, UPPER_MIXTURE)",
           ("tests/test_adaptive.py::test_adaptive_false_certificates_follow_their_exact_law[futility_alpha]",)),
    Mutant("adaptive certificate bound read at futility_alpha", "rs_core/smoothing/adaptive.py",
           "item.q_lower = min(item.q_lower, _complement(k, n, self.alpha, self.mixture))",
           "item.q_lower = min(item.q_lower, _complement(k, n, self.futility_alpha, self.mixture))",
           ("tests/test_adaptive.py::test_adaptive_false_certificates_follow_their_exact_law[futility_alpha]",)),
    Mutant("adaptive certificate bound read at futility_alpha (deterministic)", "rs_core/smoothing/adaptive.py",
           "item.q_lower = min(item.q_lower, _complement(k, n, self.alpha, self.mixture))",
           "item.q_lower = min(item.q_lower, _complement(k, n, self.futility_alpha, self.mixture))",
           ("tests/test_adaptive.py::test_the_futility_rule_gives_up_at_its_own_level_and_the_certificate_keeps_alpha",)),
    Mutant("adaptive futility forecast read at futility_alpha", "rs_core/smoothing/adaptive.py",
           "if _complement(k_best, self.n_max, self.alpha, self.mixture) > q_next:",
           "if _complement(k_best, self.n_max, self.futility_alpha, self.mixture) > q_next:",
           ("tests/test_adaptive.py::test_the_futility_rule_gives_up_at_its_own_level_and_the_certificate_keeps_alpha",)),
    Mutant("denoised smoothing skips the denoiser (CLI on a synthetic MNIST)", "rs_core/models/denoisers.py",
           "return self.classifier(self.denoiser(x))", "return self.classifier(x)",
           ("tests/test_denoise.py::test_cli_certify_applies_the_denoiser_on_a_synthetic_data_set",)),
    Mutant("certify ignores --denoiser", "rs_core/cli/main.py",
           "model = denoised(loaded.model, den.model, shape)", "model = loaded.model",
           ("tests/test_denoise.py::test_cli_certify_applies_the_denoiser_on_a_synthetic_data_set",)),
    Mutant("torchrun share by local rank", "rs_core/logs/distributed.py",
           "return list(items[self.rank::self.world])", "return list(items[self.local_rank::self.world])",
           ("tests/test_distributed.py::test_shares_over_two_nodes_of_two_processes_cover_every_item_once",)),
    Mutant("torchrun GPU by global rank", "rs_core/logs/distributed.py",
           'device = torch.device("cuda", rank.local_rank)', 'device = torch.device("cuda", rank.rank)',
           ("tests/test_distributed.py::test_each_rank_takes_the_gpu_of_its_local_rank",)),
    Mutant("torchrun GPU count checked against the global rank", "rs_core/logs/distributed.py",
           "if rank.local_rank >= torch.cuda.device_count():", "if rank.rank >= torch.cuda.device_count():",
           ("tests/test_distributed.py::test_each_rank_takes_the_gpu_of_its_local_rank",)),
    # Certificates that do not depend on the batch sizes (issue 26).
    Mutant("noise drawn one randn per batch (the batch size shows)", "rs_core/smoothing/sampling.py",
           "            self.noise.fill(out)\n            return out",
           "            torch.randn(out.shape, generator=self.generator, out=out)\n            return out",
           ("tests/test_sampling.py::test_noise_and_votes_do_not_depend_on_the_batch_size_even_when_it_changes_midway",
            "tests/test_stream.py::test_the_certificate_is_the_same_for_any_batch_sizes_and_a_time_sized_run_whose_"
            "speed_changes")),
    Mutant("stream keeps a running maximum over batch boundaries", "rs_core/smoothing/stream.py",
           "            self._q_lower = anytime_lower_bound_complement(int(self.counts[self.top_class]), self.n, "
           "self.alpha,\n                                                           self.mixture)",
           "            self._q_lower = min(self._q_lower, anytime_lower_bound_complement(int(self.counts["
           "self.top_class]), self.n, self.alpha, self.mixture))",
           ("tests/test_stream.py::test_the_certificate_is_the_same_for_any_batch_sizes_and_a_time_sized_run_whose_"
            "speed_changes",)),
    Mutant("time-sized batches probed once, never re-timed", "rs_core/smoothing/stream.py",
           "        if self.batch_seconds is None or step != sampler.batch_size:\n            return",
           "        if True:\n            return",
           ("tests/test_stream.py::test_the_certificate_is_the_same_for_any_batch_sizes_and_a_time_sized_run_whose_"
            "speed_changes",)),
    Mutant("packed data-set examples share the first one's seed", "rs_core/smoothing/smooth.py",
           "seeds=[example_seed(seed, idx) for idx, _, _ in group])", "seed=example_seed(seed, group[0][0]))",
           ("tests/test_smooth.py::test_data_set_rows_do_not_depend_on_the_batch_size_or_the_packing",)),
    Mutant("device turns by count (FIFO), not by time", "rs_core/smoothing/turns.py",
           "return min(self._waiting, key=lambda o: (self._held[o], self._waiting.index(o)))",
           "return self._waiting[0]",
           ("tests/test_turns.py::test_owners_with_short_and_long_turns_each_hold_the_lock_about_a_third_of_the_time",)),
    Mutant(".pt2 check lets any call target through", "rs_core/models/formats.py",
           "bad = sorted(t for t in targets if not _SAFE_TARGET.fullmatch(t))", "bad = []",
           ("tests/test_formats.py::test_a_hostile_pt2_is_refused_before_torch_export_load",)),
    Mutant(".pt2 check ignores guard code", "rs_core/models/formats.py",
           'elif key == "guards_code" and value:', 'elif key == "guards_code" and value and False:',
           ("tests/test_formats.py::test_a_hostile_pt2_is_refused_before_torch_export_load",)),
    Mutant("TorchScript loaded without trust", "rs_core/models/formats.py",
           "        if not trust_code:\n            raise ValueError(f\"model: refused {name}: a TorchScript",
           "        if False:\n            raise ValueError(f\"model: refused {name}: a TorchScript",
           ("tests/test_formats.py::test_torchscript_is_refused_unless_trusted",)),
    Mutant("σ-estimator: consistency term computed but not added", "rs_core/dual/estimator.py",
           "            value = value + consistency * kl", "            value = value + 0 * kl",
           ("tests/test_sigma_estimator.py::test_consistency_regularization_concentrates_the_estimators_votes_under_its_noise",)),
    Mutant("analyze --versus: unpaired (best of the others taken per image)", "rs_core/logs/certify_logs.py",
           "        d = ok[0] - ok[1 + j]", "        d = ok[0] - np.max(ok[1:], axis=0)",
           ("tests/test_certify_logs.py::test_the_dual_rs_comparison_in_the_model_cards_is_recomputed_from_the_shipped_logs",)),
    Mutant("CERTIFY's radius inflated ×1.5 (the attack finds g's boundary inside it)", "rs_core/smoothing/results.py",
           "return p_lower, radius_from_p_lower(p_lower, sigma, complement=q_lower), True",
           "return p_lower, 1.5 * radius_from_p_lower(p_lower, sigma, complement=q_lower), True",
           ("tests/test_attacks.py::test_the_found_distance_is_never_below_certifys_radius_over_many_seeds",)),
    Mutant("attack: PREDICT's confirmation skipped (the soft classifier's guess reported)", "rs_core/attacks/smoothed.py",
           "(pred if pred not in (clean, ABSTAIN) else None)", "pred",
           ("tests/test_attacks.py::test_the_found_distance_is_never_below_certifys_radius_over_many_seeds",
            "tests/test_attacks.py::test_on_the_half_plane_the_attack_finds_gs_boundary_within_2_percent_in_the_exact_direction")),
    Mutant("attack: noise from the certificate's seed", "rs_core/smoothing/seeding.py",
           "    return derive_seed(seed, SeedPath.ATTACK)", "    return seed",
           ("tests/test_attacks.py::test_the_attacks_noise_never_reuses_a_certificates_samples",)),
    Mutant("attack: optimisation noise from the certificate's seed", "rs_core/attacks/smoothed.py",
           "soft = _Soft(model, x, sigma, m, batch_size, clean, make_generator(root, device))",
           "soft = _Soft(model, x, sigma, m, batch_size, clean, make_generator(seed, device))",
           ("tests/test_attacks.py::test_the_attacks_noise_never_reuses_a_certificates_samples",)),
    Mutant("attack: Stop ignored", "rs_core/attacks/smoothed.py",
           "        if self.stop is not None and self.stop.is_set():\n            self.stopped = True",
           "        if False:\n            self.stopped = True",
           ("tests/test_attacks.py::test_stop_ends_the_search_within_a_step_and_keeps_what_was_found",)),
    # Issue 30: noises and norms (rs_core/smoothing/noises.py). "λ for σ of the wrong noise" and "ℓ1 radius with
    # the ℓ2 formula" are the issue's planted bugs.
    Mutant("Laplace λ = σ (Gaussian's scale for σ)", "rs_core/smoothing/noises.py",
           "        return self.sigma / math.sqrt(2.0)\n", "        return self.sigma\n",
           ("tests/test_noises.py::test_radius_in_1d_is_the_neyman_pearson_shift",
            "tests/test_noises.py::test_samples_have_mean_zero_variance_sigma2_and_the_right_kurtosis")),
    Mutant("uniform λ = σ/√2 (Laplace's scale for σ)", "rs_core/smoothing/noises.py",
           "        return self.sigma * math.sqrt(3.0)\n", "        return self.sigma / math.sqrt(2.0)\n",
           ("tests/test_noises.py::test_radius_in_1d_is_the_neyman_pearson_shift",
            "tests/test_noises.py::test_samples_have_mean_zero_variance_sigma2_and_the_right_kurtosis")),
    Mutant("Laplace ℓ1 radius with the Gaussian ℓ2 formula", "rs_core/smoothing/noises.py",
           "        return -self.lam * np.log(2.0 * q)\n",
           "        return -self.sigma * __import__('scipy.special').special.ndtri(q)\n",
           ("tests/test_noises.py::test_radius_in_1d_is_the_neyman_pearson_shift",)),
    Mutant("uniform ℓ1 radius with the Gaussian ℓ2 formula", "rs_core/smoothing/noises.py",
           "            return 2.0 * self.lam * (0.5 - q)\n",
           "            return -self.sigma * __import__('scipy.special').special.ndtri(q)\n",
           ("tests/test_noises.py::test_radius_in_1d_is_the_neyman_pearson_shift",)),
    Mutant("uniform ℓ∞ radius without the dimension", "rs_core/smoothing/noises.py",
           "-np.expm1(np.log(0.5 + q) / d)", "-np.expm1(np.log(0.5 + q))",
           ("tests/test_noises.py::test_uniform_radii_against_product_of_overlaps",)),
    Mutant("CERTIFY: Cohen's Gaussian ℓ2 radius whatever the noise and norm", "rs_core/smoothing/results.py",
           'if noise is None or (noise.name == "gaussian" and norm == "l2"):', "if True:",
           ("tests/test_noise_certify.py::test_laplace_l1_radius_in_certificate",
            "tests/test_noise_certify.py::test_certify_on_half_plane_follows_exact_law")),
    Mutant("Laplace samples with the wrong tail (Gaussian noise of the same σ)", "rs_core/smoothing/noises.py",
           "        return z.sign_().mul_(tail.log_()).mul_(-self.lam)\n", "        return z.mul_(self.sigma)\n",
           ("tests/test_noises.py::test_samples_have_mean_zero_variance_sigma2_and_the_right_kurtosis",
            "tests/test_noise_certify.py::test_votes_on_half_plane_have_the_marginal_probability")),
]


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run(mutant: Mutant) -> tuple[bool, float, str]:
    """Applies the mutant to a copy and runs its tests; True when they fail (the mutant is killed)."""
    with tempfile.TemporaryDirectory(prefix="rs-mutant-") as tmp:
        dest = Path(tmp)
        _copy_tree(dest)
        target = dest / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            raise SystemExit(f"{mutant.name}: the line to break occurs {text.count(mutant.old)} times in "
                             f"{mutant.path}; update tests/mutation_check.py")
        target.write_text(text.replace(mutant.old, mutant.new))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "--no-header", *mutant.tests], cwd=dest, capture_output=True, text=True)
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        return proc.returncode != 0, time.perf_counter() - start, last


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or any(n.lower() in m.name.lower() for n in names)]
    survived = 0
    for m in chosen:
        killed, seconds, last = run(m)
        survived += not killed
        print(f"{'killed  ' if killed else 'SURVIVED'}  {seconds:6.1f}s  {m.name}  [{last}]", flush=True)
    print(f"{len(chosen) - survived} of {len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
