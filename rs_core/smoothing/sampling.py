"""Monte Carlo votes of a base classifier under Gaussian noise (SampleUnderNoise).

Cohen et al. (2019), §3.2 / App. C: draw ε ~ N(0, σ²I), classify x + ε with the
base classifier f, count the votes per class. Noise is added in [0, 1] pixel
space; the model's first layer normalizes (see :mod:`rs_core.models.architectures`).

The hot path keeps everything on the model's device: noise from a per-sampler
``torch.Generator`` (never the global RNG, so concurrent sessions neither
share nor disturb a stream, and a seed reproduces the counts bit for bit on
CPU), votes accumulated with an on-device scatter-add, and no host synchronization
until the caller reads the counts.

One stateful core, :class:`NoiseSampler`, sits behind the functions
:func:`sample_counts` (one shot), :func:`iter_counts` (streamed, one host sync
per batch) and :func:`sample_counts_many` (several inputs packed into shared
forward batches).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TypedDict, Unpack

import numpy as np
import torch
from torch import nn

from rs_core.checks import check_count, check_images, check_seed, check_sigma
from rs_core.models.device import AUTOCAST_DTYPES, Autocast, check_autocast, check_model, model_device, model_dtype
from rs_core.smoothing.noises import Noise, get_noise
from rs_core.smoothing.seeding import SeedPath, derive_seed, fresh_seed, make_generator


class SamplingOptions(TypedDict, total=False):
    """The keyword-only options of every sampling function (``sample_counts``, ``certify``, ``predict`` …), documented
    once here and passed through unchanged to :class:`NoiseSampler` (or :class:`~rs_core.smoothing.smooth.Smooth`).

    - ``seed``: int in [0, 2**64) or None (a fresh seed, recorded in the result). The votes are a function of the
      model, the input, σ, the counts and the seed: not of the batch size, the timing or other users.
    - ``generator``: draw the noise from this ``torch.Generator`` (on the model's device) instead of a seed.
    - ``autocast``: ``"bf16"`` or ``"fp16"`` for a reduced-precision forward pass, or None (fp32). The noise is
      drawn in float32 either way.
    - ``noise``: ``"gaussian"`` (default), ``"laplace"`` or ``"uniform"``, σ its standard deviation per coordinate
      (:mod:`rs_core.smoothing.noises`).
    """

    seed: int | None
    generator: torch.Generator | None
    autocast: Autocast
    noise: str


# Elements per randn call when noise is drawn in blocks off the CPU: large enough that the calls cost nothing next to a
# forward pass, fixed by the library (never by the batch size) so that the noise is a function of the seed alone.
NOISE_BLOCK_ELEMENTS = 1 << 18


def noise_block(sample_shape: tuple[int, ...] | torch.Size, device_type: str = "cpu") -> int:
    """Samples per noise block for inputs of ``sample_shape`` ([C, H, W]) on a device type: the unit in which the
    noise is drawn.

    A generator's output depends on how its draws are split into calls: on the CPU unless every call is a multiple
    of 16 elements (torch fills normals 16 at a time), elsewhere (CUDA's counter-based generator) always. So the
    CPU draws whole multiples of the smallest block of 16·k elements, and other devices one block of about
    2**18 elements per call, whatever the batch size: the votes are then the same for any batch sizes.

    >>> noise_block((1, 28, 28)), noise_block((1, 2, 2)), noise_block((3, 5, 5)), noise_block((1, 28, 28), "cuda")
    (1, 4, 16, 335)
    """
    d = max(1, int(np.prod(sample_shape)))
    if device_type == "cpu":
        return 16 // math.gcd(d, 16)
    return max(1, -(-NOISE_BLOCK_ELEMENTS // d))


class NoiseStream:
    """ε ~ N(0, I) for consecutive samples of one shape from one generator, in blocks (:func:`noise_block`), so that
    :meth:`fill` returns the same values however the samples are split into calls.

    >>> g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    >>> a, b = NoiseStream(g1, (3,), torch.float32), NoiseStream(g2, (3,), torch.float32)
    >>> whole, parts = torch.empty(10, 3), torch.empty(10, 3)
    >>> a.fill(whole); b.fill(parts[:7]); b.fill(parts[7:])
    >>> torch.equal(whole, parts)
    True
    """

    def __init__(self, generator: torch.Generator, sample_shape: tuple[int, ...] | torch.Size,
                 dtype: torch.dtype) -> None:
        self.generator, self.sample_shape, self.dtype = generator, tuple(sample_shape), dtype
        self.device = torch.device(generator.device)
        self.block = noise_block(self.sample_shape, self.device.type)
        # On the CPU several whole blocks drawn in one call continue the stream exactly as block by block would
        # (each is a multiple of 16 elements), so they go straight into the output in one call.
        self._many_per_call = self.device.type == "cpu"
        self._staged: torch.Tensor | None = None  # the current block
        self._used = 0  # samples of the current block already served

    def fill(self, out: torch.Tensor) -> None:
        """Writes the next ``out.shape[0]`` samples of noise into ``out`` [m, *sample_shape] (contiguous)."""
        m, done = out.shape[0], 0
        while done < m:
            if self._staged is not None:
                take = min(m - done, self.block - self._used)
                out[done:done + take].copy_(self._staged[self._used:self._used + take])
                self._used += take
                done += take
                if self._used == self.block:
                    self._staged = None
                continue
            whole = (m - done) // self.block * self.block
            if whole:  # whole blocks: straight into the output
                take = whole if self._many_per_call else self.block
                torch.randn(out[done:done + take].shape, generator=self.generator, out=out[done:done + take])
                done += take
            else:
                self._staged = torch.randn((self.block, *self.sample_shape), generator=self.generator,
                                           device=self.device, dtype=self.dtype)
                self._used = 0


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom)


class NoiseSampler:
    """Draws votes of ``model`` on x + ε, ε ~ N(0, σ²I) (or another ``noise``), for one or several inputs.

    Args:
        model: maps [B, C, H, W] images in [0, 1] to [B, K] class scores; must
            be in eval mode (a model in train mode makes votes depend on the
            batch, e.g. through batch norm, and breaks independence).
        x: one input [C, H, W] or several [N, C, H, W].
        sigma: noise level σ > 0.
        batch_size: forward batch size; on CUDA out-of-memory it is halved and
            the batch retried, so no vote is lost (``batch_size`` then reports
            the size in use).
        seed: an integer in [0, 2**64) from which the sampler's own generator
            is seeded, every bit of it (:mod:`rs_core.smoothing.seeding`); ``None`` draws
            a fresh seed from the OS (recorded in ``seed`` so the run can be repeated).
        generator: a ``torch.Generator`` on the model's device to use instead.
        autocast: ``"bf16"`` or ``"fp16"`` to run the forward pass under
            ``torch.autocast``; off by default.
        noise: ``"gaussian"`` (default), ``"laplace"`` or ``"uniform"``, each with standard deviation σ per
            coordinate (:mod:`rs_core.smoothing.noises`); made from the same standard normals, so batch-invariant.

    Noise is drawn and added to x in float32 (float64 for a float64 model);
    the noisy input is cast to the model's dtype after adding.

    Each :meth:`sample` call draws fresh noise, so successive calls give
    independent votes (CERTIFY's selection and estimation samples). Counts of
    input i are in row i; samples of several inputs are packed into the same
    forward batches (input-major order), which keeps batches full when n is
    small. The noise is drawn in blocks fixed by the library (:class:`NoiseStream`),
    so the votes do not depend on the batch size, which may change between calls,
    and ``sample(a)`` then ``sample(b)`` uses the same noise as one ``sample(a + b)``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        sigma: float,
        batch_size: int = 1000,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        autocast: Autocast = None,
        noise: str = "gaussian",
    ) -> None:
        self._setup(check_model(model), x, check_sigma(sigma), check_count(batch_size, "batch_size"),
                    check_autocast(autocast), seed, generator, get_noise(noise, sigma))

    @classmethod
    def from_checked(cls, model: nn.Module, x: torch.Tensor, sigma: float, batch_size: int, autocast: Autocast,
                     seed: int | None, generator: torch.Generator | None,
                     noise_dist: Noise | None = None) -> NoiseSampler:
        """A sampler whose model, σ, batch size, autocast and noise the caller has already validated (as
        :class:`~rs_core.smoothing.smooth.Smooth` does once for all its calls); x, seed and generator are checked here.
        ``noise_dist``: the noise (:mod:`rs_core.smoothing.noises`, its σ the same as ``sigma``); None: Gaussian.
        """
        self = cls.__new__(cls)
        self._setup(model, x, sigma, batch_size, autocast, seed, generator,
                    get_noise("gaussian", sigma) if noise_dist is None else noise_dist)
        return self

    def _setup(self, model: nn.Module, x: torch.Tensor, sigma: float, batch_size: int, autocast: Autocast,
               seed: int | None, generator: torch.Generator | None, noise_dist: Noise) -> None:
        self.model, self.sigma, self.batch_size, self.autocast = model, sigma, batch_size, autocast
        self.noise_dist = noise_dist
        self.noise_name = noise_dist.name
        self.device = model_device(model)
        single = isinstance(x, torch.Tensor) and x.ndim == 3
        xs = check_images(x[None] if single else x, 4, "x")
        self.model_dtype = model_dtype(model)
        # Noise is drawn and added in float32 or wider whatever the model's dtype, and the noisy
        # input is cast to the model's dtype only after adding: a bf16 draw has 8 bits of mantissa,
        # so N(0, σ²) would take a few hundred distinct values (Voráček & Hein 2023 on why the
        # arithmetic of the noise matters; see the README's floating-point note).
        self.noise_dtype = torch.promote_types(torch.float32, self.model_dtype)
        self.inputs = xs.detach().to(self.device, dtype=self.noise_dtype).contiguous()
        if generator is not None:
            if seed is not None:
                raise ValueError("seed: give either seed or generator, not both")
            if not isinstance(generator, torch.Generator):
                raise ValueError(f"generator: must be a torch.Generator, got {type(generator).__name__}")
            if torch.device(generator.device).type != self.device.type:
                raise ValueError(f"generator: is on {generator.device}, the model on {self.device}")
            self.generator = generator
            self.seed = generator.initial_seed()
        else:
            seed = check_seed(seed)
            self.seed = fresh_seed() if seed is None else seed
            self.generator = make_generator(self.seed, self.device)
        self.num_classes = self._probe()
        self.noise = NoiseStream(self.generator, self.inputs.shape[1:], self.noise_dtype)
        self.own_noise: list[NoiseStream] | None = None  # one stream per input (use_own_seeds), else None
        self._buffer: torch.Tensor | None = None
        self._ones_buf: torch.Tensor | None = None

    @property
    def num_inputs(self) -> int:
        return self.inputs.shape[0]

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.autocast])

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != self.model_dtype:
            batch = batch.to(self.model_dtype)  # cast after adding: x + ε was formed in float32 or wider
        with self._autocast():
            scores = self.model(batch)
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != batch.shape[0]:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"model: output must have shape [B, K] for a batch of B={batch.shape[0]}, got {got}")
        return scores.argmax(dim=1)

    @torch.inference_mode()
    def _probe(self) -> int:
        """Runs the clean inputs once to check the output shape and learn K."""
        try:
            scores = self.model(self.inputs[:1].to(self.model_dtype))
        except (RuntimeError, TypeError) as err:  # wrong channels, size, dtype …
            raise ValueError(f"x: the model cannot process an input of shape "
                             f"{tuple(self.inputs.shape[1:])}: {err}") from err
        if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[0] != 1:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"model: output must have shape [B, K], got {got} for B=1")
        if scores.shape[1] < 2:
            raise ValueError(f"model: must score at least 2 classes, got K={scores.shape[1]}")
        return int(scores.shape[1])

    def use_own_seeds(self, seeds: list[int]) -> None:
        """Draws each input's noise from a generator of its own, seeded with ``seeds[i]``, so that an input's votes
        are those of a sampler of that input alone with that seed, whatever it is packed with (call before
        sampling). ``seed`` then stays the first input's."""
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) != self.num_inputs or any(s is None for s in seeds):
            raise ValueError(f"seeds: need one integer seed per input ({self.num_inputs}), got {len(seeds)}")
        shape = self.inputs.shape[1:]
        self.own_noise = [NoiseStream(make_generator(s, self.device), shape, self.noise_dtype) for s in seeds]
        self.seed = seeds[0]

    def _noise(self, start: int, size: int, num: int) -> torch.Tensor:
        """Noise for samples ``start … start + size`` of a ``sample(num)`` call (input-major order)."""
        shape = (self.batch_size, *self.inputs.shape[1:])
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = torch.empty(shape, device=self.device, dtype=self.noise_dtype)
        out = self._buffer[:size]
        if self.own_noise is None:
            self.noise.fill(out)
            return out
        for i in range(start // num, (start + size - 1) // num + 1):  # each input's part from its own stream
            lo, hi = max(start, i * num), min(start + size, (i + 1) * num)
            self.own_noise[i].fill(out[lo - start:hi - start])
        return out

    def _ones(self, size: int) -> torch.Tensor:
        if self._ones_buf is None or self._ones_buf.numel() < size:
            self._ones_buf = torch.ones(max(size, self.batch_size), dtype=torch.int64, device=self.device)
        return self._ones_buf[:size]

    @torch.inference_mode()
    def sample(self, num: int) -> torch.Tensor:
        """Draws ``num`` noisy samples per input; returns their votes, [N, K] int64 on the device.

        No host synchronization happens here (except to recover from CUDA
        out-of-memory), so calls can be queued back to back on a GPU.
        """
        num = check_count(num, "num")
        n_in, k = self.num_inputs, self.num_classes
        counts = torch.zeros(n_in * k, dtype=torch.int64, device=self.device)
        total, start = n_in * num, 0
        while start < total:
            size = min(self.batch_size, total - start)
            # Standard normals of the batch-invariant stream, mapped per coordinate to the smoothing noise
            # (Gaussian: ·σ in place, exactly as before; others: inverse CDF, exact in distribution).
            batch = self.noise_dist.transform(self._noise(start, size, num))
            first, last = start // num, (start + size - 1) // num
            if first == last:  # whole batch belongs to one input: broadcast, no gather
                batch.add_(self.inputs[first])
                offset: torch.Tensor | int = first * k
            else:
                owner = torch.arange(start, start + size, device=self.device) // num
                batch.add_(self.inputs[owner])
                offset = owner * k
            try:
                preds = self._predict(batch)
            except Exception as err:
                if not _is_oom(err) or self.batch_size == 1:
                    raise
                # The noise of the failed batch is dropped unused: fresh noise
                # for the retry keeps the samples i.i.d.; no vote was counted.
                self.batch_size = max(1, self.batch_size // 2)
                self._buffer = None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            # index_add_ rather than torch.bincount: on CUDA bincount reads the
            # max label back to the host to size its output, a sync per batch.
            counts.index_add_(0, preds + offset, self._ones(size))
            start += size
        return counts.view(n_in, k)

    def stream(self, num: int, every: int | None = None) -> Iterator[torch.Tensor]:
        """Draws ``num`` samples per input in steps of ``every`` (default ``batch_size``).

        Yields the cumulative votes [N, K] on the device after each step; the
        last step is the remainder, so exactly ``num`` samples are drawn.
        """
        num = check_count(num, "num")
        every = self.batch_size if every is None else check_count(every, "every")
        done, acc = 0, None
        while done < num:
            step = min(every, num - done)
            votes = self.sample(step)
            acc = votes if acc is None else acc + votes
            done += step
            yield acc


@torch.inference_mode()
def time_batch_size(model: nn.Module, x: torch.Tensor, max_batch: int, target_s: float = 0.5, *,
                    autocast: Autocast = None) -> int:
    """The largest power of two (or ``max_batch``) whose forward pass takes at most about ``target_s`` seconds.

    Timed on copies of the clean input ``x`` [C, H, W] (no noise is drawn, so a sampler's generator is untouched):
    one warm-up pass of one image, then doubling while a pass takes under half the target. With batches this long,
    Stop is answered within about ``target_s`` on any model (a ResNet-50 on a CPU takes ~0.1 s per image, so a
    1,000-image batch would hold Stop for minutes). The probe costs about twice the final batch's time.

    >>> time_batch_size(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval(), torch.zeros(1, 2, 2), 64)
    64
    """
    import time

    max_batch = check_count(max_batch, "max_batch")
    if isinstance(target_s, bool) or not isinstance(target_s, (int, float)) or not 0 < target_s <= 3600:
        raise ValueError(f"target_s: must be a number of seconds in (0, 3600], got {target_s!r}")
    device, dtype = model_device(model), model_dtype(model)
    ctx = (torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[autocast]) if autocast
           else contextlib.nullcontext())
    one = x.detach().to(device=device, dtype=dtype).reshape(1, *x.shape[-3:])

    def timed(b: int) -> float:
        batch = one.expand(b, *one.shape[1:]).contiguous()
        start = time.perf_counter()
        with ctx:
            model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(1)  # warm-up: first-call costs (allocations, kernel selection) are not per-batch costs
    b = 1
    while b < max_batch:
        t = timed(b)
        if t >= target_s / 2:
            return b if t <= target_s or b == 1 else b // 2
        b = min(max_batch, 2 * b)
    return max_batch


def sample_counts(model: nn.Module, x: torch.Tensor, sigma: float, num: int, batch_size: int = 1000,
                  **options: Unpack[SamplingOptions]) -> np.ndarray:
    """Votes of ``model`` on ``num`` noisy copies x + ε, ε ~ N(0, σ²I) (Cohen et al. SampleUnderNoise).

    Args: x [C, H, W] in [0, 1]. Returns: int64 numpy array [K] summing to ``num``.
    One host synchronization at the end.

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    >>> counts = sample_counts(model, torch.zeros(1, 2, 2), sigma=0.5, num=100, seed=0)
    >>> counts.dtype, counts.shape, int(counts.sum())
    (dtype('int64'), (3,), 100)
    """
    check_images(x, 3)
    sampler = NoiseSampler(model, x, sigma, batch_size, **options)
    return sampler.sample(num)[0].cpu().numpy()


def iter_counts(model: nn.Module, x: torch.Tensor, sigma: float, num: int, batch_size: int = 1000,
                **options: Unpack[SamplingOptions]) -> Iterator[np.ndarray]:
    """Like :func:`sample_counts`, streamed: yields cumulative counts [K] after each batch.

    One host synchronization per yielded batch; the final yield equals
    ``sample_counts`` with the same arguments (same seed → same counts on CPU).
    """
    check_images(x, 3)
    sampler = NoiseSampler(model, x, sigma, batch_size, **options)
    for acc in sampler.stream(num):
        yield acc[0].cpu().numpy()


def sample_counts_many(model: nn.Module, xs: torch.Tensor, sigma: float, num: int, batch_size: int = 1000,
                       **options: Unpack[SamplingOptions]) -> np.ndarray:
    """Votes for several inputs [N, C, H, W] at once: int64 numpy array [N, K], each row summing to ``num``.

    Samples of consecutive inputs share forward batches, so a small ``num``
    (e.g. CERTIFY's n0 = 100) still fills a batch of 1000.
    """
    check_images(xs, 4, "xs")
    sampler = NoiseSampler(model, xs, sigma, batch_size, **options)
    return sampler.sample(num).cpu().numpy()


def noisy_views(x: torch.Tensor, sigma: float, k: int = 6, *, seed: int = 0, noise: str = "gaussian") -> torch.Tensor:
    """k draws of x + ε, ε ~ N(0, σ²I) (or the ``noise`` of standard deviation σ), for showing what the base
    classifier sees: [k, C, H, W] on x's device.

    Display only: CERTIFY draws its own noise (the views use ``derive_seed(seed, SeedPath.NOISY_VIEWS)``, not the
    seed itself). Not clipped (neither is the noise the classifier sees).

    >>> noisy_views(torch.zeros(1, 2, 2), 0.5, k=3).shape
    torch.Size([3, 1, 2, 2])
    """
    sigma = check_sigma(sigma)
    k = check_count(k, "k")
    g = make_generator(derive_seed(seed, SeedPath.NOISY_VIEWS), x.device)
    eps = torch.randn((k, *x.shape), generator=g, device=x.device, dtype=torch.float32)
    if noise == "gaussian":
        return x.float().unsqueeze(0) + sigma * eps  # the views they always were
    return x.float().unsqueeze(0) + get_noise(noise, sigma).transform(eps)
