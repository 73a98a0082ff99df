"""What a plugin author implements: Task, Draft, Refiner, Metric and Method.

Every plugin is a class (usually a dataclass) deriving from one of these abstract base
classes, whose constructor arguments are its options; a suite's table of options for a plugin
becomes those arguments. What a kind of plugin must implement is its base's abstract methods
(``@abstractmethod`` below); the other methods are optional hooks with working defaults. The
registry checks this when a plugin is registered or listed, so a plugin that lacks a method is
refused by name before any work starts, not half-way through a run. A plugin validates its
options in ``__post_init__`` by raising ValueError; the harness turns that, and any unknown
option, into one clear ConfigError before any work starts.

torch is imported only for type checking: the registry imports these bases, and
``wsfm-bench list`` must not pay for torch.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import ConfigError, given
from harness.nn.config import TrainConfig
from harness.roles import Role

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.context import CellContext
    from harness.registry import P, Registry


@dataclass
class TaskData:
    """A task's seeded train/test split (test is the held-out metric reference), with the
    training split's class labels where the data set has them (for feature extractors)."""

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None


class Task(ABC):
    """A data set plus what is needed to model and judge it.

    Implement ``load`` and ``make_network``; set ``drafts`` (at least "good" and "poor":
    name -> (draft plugin, options)), ``refiner``, ``metrics`` and ``primary_metric``. The
    control drafts "positive" and "negative" (harness.controls) come with every task; set
    ``control_options`` (the corrupted-data draft's options) to tune the corruption to its
    data.
    """

    modality: str = "points"
    # Discrete tasks (text): tokens 0..vocab_size-1, the mask token is id vocab_size.
    vocab_size: int | None = None
    drafts: dict[str, tuple[str, dict[str, Any]]] = {}
    control_options: dict[str, Any] = {}
    refiner: tuple[str, dict[str, Any]] = ("nearest-neighbour", {})
    metrics: tuple[str, ...] = ()
    primary_metric: str = ""
    train_config: TrainConfig = TrainConfig()
    n_pairs: int = 20_000  # (draft, refined) training pairs for warm-start models
    # Options for the task's metrics by name (a judge model's path, say); defaults otherwise.
    metric_options: dict[str, dict[str, Any]] = {}
    samples_kept: int = 1000  # samples stored per cell (and held-out points per run) for plots
    # Option fields (dataclass fields) that only the drafts, their pairs and the controls read.
    # No key holds them as task options: each must reach a draft's options (``drafts``,
    # ``control_options``), ``refiner`` or ``n_pairs``, and keys only that draft or the pairs
    # (and the warm starts trained on them). A new draft setting reuses every other model.
    draft_options: tuple[str, ...] = ()
    # Option fields that change only how samples are judged (a judge model's sample count,
    # say), keyed by the metric's own options: no cache key holds them, so changing one
    # re-judges and retrains nothing.
    judging_options: tuple[str, ...] = ()

    @property
    def all_drafts(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The task's drafts and the controls: "positive" (corrupted data, paired with the
        clean data) and "negative" (noise, paired with itself)."""
        return {"positive": ("corrupted-data", dict(self.control_options)),
                "negative": ("noise", {}), **self.drafts}

    @property
    def discrete(self) -> bool:
        """Tokens (``vocab_size`` set): discrete paths, sources and samplers apply."""
        return self.vocab_size is not None

    @abstractmethod
    def load(self) -> TaskData:
        """The task's train/test split, the same every call for the same options (seeded)."""

    def check(self) -> None:
        """Raise ValueError (or OSError) saying what is wrong with the task's data, before any
        work starts (a suite is validated with it). The default checks nothing: implement it
        where the data can be broken in ways the options do not show (files on disk)."""
        return None  # an optional hook, not part of the contract

    @abstractmethod
    def make_network(self) -> nn.Module:
        """A fresh, untrained network that every method on this task shares (harness/nn/)."""

    def notes(self) -> list[str]:
        """Lines the report should show about this task as configured on this machine
        (e.g. an optional judge model that is missing, and what was used instead)."""
        return []

    def finalize(self, samples: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Map raw samples into the data's domain before any metric, the same way for every
        method (images: clamp and quantise to uint8 levels). Returns the samples and counts
        to record (e.g. {"clamped": n}); nothing is changed silently."""
        return samples, {}


class Draft(ABC):
    """A cheap generator trained on the task's training split.

    Implement ``fit``, ``sample``, ``state_dict`` and ``load_state_dict``; its state is what
    the harness caches on disk. Sampling time is measured by the harness, never declared.
    A control draft (harness.controls) sets ``control`` ("positive": a warm start from it must
    read non-inferior; "negative": inferior) and may make its own training pairs (``pairs``).
    """

    control: ClassVar[str | None] = None

    @abstractmethod
    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        """Train on ``train`` (the task's training split, on the CPU) with ``generator``."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draft samples shaped like the training data, on the draft's device."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything a fitted draft needs to sample again, cached on disk: tensors, numbers,
        strings, lists and dicts (read back with ``torch.load(weights_only=True)``)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a fitted draft from what ``state_dict`` returned; the harness always samples
        from a restored draft (also right after ``fit``), so the cache cannot drift."""

    def to(self, device: torch.device) -> Draft:
        """Move to ``device`` for sampling; the default keeps the draft where it is."""
        return self

    def pairs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``n`` warm-start training pairs (draft, target) the draft makes itself, or None (the
        default): the task's refiner refines ``n`` of its samples."""
        return None


class Refiner(ABC):
    """Maps drafts to refined targets x_r = R(x_d); used only to build training pairs.

    Implement ``fit`` and ``refine``.
    """

    @abstractmethod
    def fit(self, train: torch.Tensor) -> None:
        """Prepare from the task's training split (an index of it, say)."""

    @abstractmethod
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        """One refined target per draft, shaped like ``drafts``."""

    def stats(self) -> dict[str, Any]:
        """Counts from the last ``refine`` (requests, retries, failures...), kept with the
        cached pairs and shown in the report; JSON-able numbers and strings only."""
        return {}


class Metric(ABC):
    """A sample-quality measure against the held-out split.

    Implement ``compute(samples, reference, seed, stats=None) -> float`` and set
    ``higher_is_better``. Work that depends only on the reference set (its features, k-NN
    radii, within-set distances) goes in ``reference_stats``: the harness computes it once per
    (task data, metric options, n_eval, seed, device), caches it on disk, and passes it to
    ``compute`` as ``stats``; ``compute`` must give the same value without it.
    """

    higher_is_better: bool = False

    def min_points(self) -> int:
        """The fewest samples, and reference points, ``compute`` can judge (2 for a spread,
        k + 1 for k-nearest neighbours): a suite asking for fewer is refused before any work."""
        return 1

    def setup(self, train: torch.Tensor, train_labels: torch.Tensor | None) -> None:
        """Called before ``compute`` with the task's training split (and its labels, if any):
        a metric that learns a feature space (a domain classifier) fits it here, cached."""
        return None  # an optional hook, not part of the contract

    def reference_stats(self, reference: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """Work on the reference set alone, for ``compute``'s ``stats``; the default: none."""
        return {}

    @abstractmethod
    def compute(
        self,
        samples: torch.Tensor,
        reference: torch.Tensor,
        seed: int,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> float:
        """The metric of ``samples`` against ``reference`` (deterministic for ``seed``)."""


@dataclass
class SamplingPlan:
    """How a method produces one batch, split so the harness can count and time each part.

    - ``draw_start(n, generator)`` makes the start point (draft + source, or noise); it must
      not call ``network``; its time is the draft time T_d.
    - ``integrate(network, x_start, generator)`` runs the sampler; it must call the network
      only through the ``network`` argument, which the harness wraps to count NFE.
    - ``expected_nfe`` is the number of network calls one batch should take; the harness
      compares it with the count and flags any difference.
    - ``reference_integrate`` (warm starts only) runs the full N-step grid from t = 0 with the
      same network, so the wall-clock speed-up is measured side by side in the same cell.
    """

    network: nn.Module | None
    draw_start: Callable[[int, torch.Generator], torch.Tensor]
    integrate: Callable[[Callable, torch.Tensor, torch.Generator], torch.Tensor]
    expected_nfe: int
    n_steps: int
    k_steps: int
    evals_per_step: int = 1
    t0: float = 0.0
    reference_integrate: (
        Callable[[Callable, torch.Tensor, torch.Generator], torch.Tensor] | None
    ) = None
    reference_nfe: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    # The full model's own start (noise, or all-[MASK]) for the reference run; Gaussian if None.
    reference_start: Callable[[int, torch.Generator], torch.Tensor] | None = None
    # The variant label when it depends on the task (an option that means nothing for this
    # task left out, say); None: the method's own ``label()``.
    variant: str | None = None
    # What the record shows of how it samples: the solver or sampler, the start (a warm
    # start's "draft" / "noised-draft", or the source: "noise", ...), a warm-start model's
    # initialisation ("scratch" / "finetune"); None where it does not apply.
    solver: str | None = None
    start: str | None = None
    init: str | None = None
    # The refiner's counts from building the training pairs (warm starts), for the record.
    refiner_stats: dict[str, Any] | None = None
    # A warm start's training targets (the refined side of its pairs): the harness scores
    # n_samples of them with the cell's metrics, the ceiling training on them can reach.
    targets: torch.Tensor | None = None
    # How this method's NFE compares with others', when it does not one to one (a one-token
    # call with a KV cache, say): reports print it beside its NFE.
    nfe_note: str | None = None


class Method(ABC):
    """A sampler under test. Implement ``prepare`` (train or load models, then return a plan).

    Declare what the method is to the evidence with ``role`` (harness.roles.Role): a full
    model is the ``REFERENCE`` (its frontier over solvers and budgets is what warm starts are
    judged against), a warm start is ``WARM_START`` and says which draft it starts from
    (``starts_from``) and at which time (``start_time``), a draft alone is the ``FLOOR`` (and
    says which draft it is), anything else a ``BASELINE``. ``title`` is its name in reports.
    ``uses_budget`` is False for methods that ignore the step budget (a draft alone).
    """

    role: ClassVar[Role] = Role.BASELINE
    title: ClassVar[str | None] = None
    uses_budget: ClassVar[bool] = True

    def starts_from(self) -> str | None:
        """The draft a warm start starts from, or a floor is (a task's draft name such as
        "good", or a draft plugin); None for other methods."""
        return None

    def start_time(self) -> float:
        """The time t0 the integration starts at, as the user set it (0: from the source).
        The harness recounts K = ceil((1 - t0) N) from it in its own arithmetic."""
        return 0.0

    @abstractmethod
    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        """Train or load this method's models through ``ctx`` (cached by content) and return
        the plan that samples with a budget of ``n_steps``."""

    def check_task(self, task: Task) -> None:
        """Raise ValueError if this method cannot run on ``task`` (checked before any work)."""
        return None  # an optional hook, not part of the contract

    def options(self) -> dict[str, Any]:
        """The method's options (a dataclass's fields; none otherwise)."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def label(self) -> str:
        """A short variant label from the options, e.g. 'draft=good,t0=0.9'."""
        return ",".join(f"{k}={v}" for k, v in self.options().items())

    def advice_topic(self) -> str | None:
        """What this method's advice before training is about (a warm start's draft), or None
        when it gives none. Methods with the same topic on a task share one advice."""
        return None

    def advise(self, ctx: CellContext) -> dict[str, Any]:
        """Advice from the task's data alone, asked once per task and topic at the suite's
        first seed before any cell runs (a warm start's t0 for its draft): a JSON-able dict
        that the run stores in advisor.json and the report shows ("t0": the advised start).
        Asked only when ``advice_topic`` is not None; the default advises nothing."""
        return {}


def instantiate(registry: Registry[P], name: str, options: dict[str, Any]) -> P:
    """Build plugin ``name`` of ``registry`` with ``options`` (an instance of the registry's
    base class: a ``Method`` from ``methods``); unknown or bad options give a ConfigError."""
    cls = registry.get(name)
    if dataclasses.is_dataclass(cls):
        allowed = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{registry.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
        for f in dataclasses.fields(cls):
            if f.name in options:
                check_option_type(f.type, options[f.name], f"{registry.kind} {name!r}: {f.name}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{registry.kind} {name!r}: {exc}") from exc


def check_option_type(annotation: Any, value: Any, what: str) -> None:
    """A number, an integer or a flag where the option's declared type (``int``, ``float``,
    ``bool``, or one of them ``| None``) says so, for every plugin alike: "0.5" for a float
    is refused like "200" for an integer, not converted by one plugin and refused by another.
    Other types are the plugin's to check."""
    names = ({n.strip() for n in annotation.split("|")} if isinstance(annotation, str)
             else {getattr(annotation, "__name__", str(annotation))})
    names.discard("None")
    if value is None or not names or not names <= {"int", "float", "bool"}:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if names == {"bool"}:
        ok, want = isinstance(value, bool), "true or false"
    elif "float" in names:
        ok, want = number or (isinstance(value, bool) and "bool" in names), "a number"
    else:
        ok, want = isinstance(value, int) and (number or "bool" in names), "an integer"
    if not ok:
        raise ConfigError(f"{what} must be {want}, got {given(value)}")
