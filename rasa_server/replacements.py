"""Every replacement of a Rasa internal this runtime makes where Rasa has no hook for it,
checked before it is made.

``python -m rasa_server`` calls ``install_all()`` before Rasa's CLI runs. It refuses to
start (``ReplacementCheckError``) when the installed Rasa is not the version pinned in
``pyproject.toml``, or when the source of any Rasa function in ``REPLACEMENTS`` differs from
the source its replacement was checked against (SHA-256 of ``inspect.getsource``). Only
then does it install them all. A replacement is only as right as its reading of upstream's
code: when that code changes, the replacement must be read again, not trusted.

What each replaces, and what it buys (measured; commands and equivalence tests in
docs/performance.md, "What each change bought"):

=====================  ===========================================================  ==========================================
module                 replaces (Rasa 3.6.21)                                       buys
=====================  ===========================================================  ==========================================
``action_validation``  ``RemoteAction._validate_action_result``                     action-server answers validated against a
                                                                                    schema checked once, each event against
                                                                                    the sub-schema its name selects: a form
                                                                                    answer 3.6 → 0.3 ms (was 30 ms per call
                                                                                    before the cached validator)
``event_bodies``       ``rasa.server.validate_events_in_request_body`` (the HTTP    an appended bot event (agent reply,
                       API's event bodies)                                          incident notice): the meta-schema check,
                                                                                    83 % of the append's CPU, done once
``graph_runner``       ``rasa.core.processor.DaskGraphRunner`` (the class Rasa      NLU parse 9.1 → 7.6 ms CPU (dask's
                       loads the predict graph into)                                per-call scheduling, ~10 % of a message)
``json_bodies``        ``EndpointConfig.session``                                   a 109-event handoff tracker encoded in
                                                                                    1.1 → 0.45 ms per action call
``sparse_features``    ``Features._combine_sparse_features``                        0.21 → 0.05 ms per join of featurizers'
                                                                                    matrices; parse 7.6 → 6.8 ms
``tracker_copy``       ``DialogueStateTracker.copy``                                no replay of every event before each
                                                                                    action (py-spy ~5 %)
``training``           ``GraphTrainer.train``, ``util.sparse_matrix_to_string``,    a forced training: ~25 s of
                       ``RasaDataGenerator._scipy_matrix_to_values``                fingerprinting for a cache nothing reads
                                                                                    left out; fingerprint text 1.74 → 0.41 ms
                                                                                    a 480-entry matrix; ~20 s of batch CPU
=====================  ===========================================================  ==========================================

What Rasa lets a project plug in is not here but a registered component or policy named in
``config.yml``, so stock ``rasa`` runs it too: the count-vectors featurizer
(``nlu_components.count_vectors``), DIET's and the ResponseSelector's one-message inference
(``nlu_components.diet_classifier``, ``nlu_components.response_selector``), the rule policy's
matching and states (``policies.rule_policy``). Those that re-implement an upstream method
check its source the same way when they are built (``require_unchanged``).

Some replacements also rely on upstream code they do not replace (``relies_on``): the
validator on the schema ``action_response_format_spec`` returns, the forced training's
``NoOutputCache`` on ``TrainingHook``'s interface. Their sources are checked the same way.

Each ``rasa_server`` module keeps the upstream object it replaces or relies on under an
``_UPSTREAM*`` name (``kept_as``), so the check reads upstream's source even after a
module's own ``install()`` ran. ``tests/test_replacements.py`` fails on an ``_UPSTREAM*``
name or a patched Rasa attribute that has no row here. To see the hashes of the installed
Rasa (after re-checking a module against it): ``python -m rasa_server.replacements``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

from packaging.requirements import Requirement

# The installed distribution of this project: its requirements are pyproject.toml's
# dependencies, the same in a checkout (pip install -e) and in the image (pip install .).
DISTRIBUTION = "pos1000-assistant"


class ReplacementCheckError(RuntimeError):
    """The installed Rasa is not the one the replacements were checked against."""


@dataclass(frozen=True)
class Upstream:
    """One object of Rasa's whose source a replacement was checked against."""

    path: str  # dotted: module, then attributes
    sha256: str  # of inspect.getsource(object) when the replacement was last checked
    kept_as: Optional[str] = None  # the module's name for the upstream object, if it keeps one


@dataclass(frozen=True)
class Replacement:
    """One upstream object replaced by a ``rasa_server`` module's ``install()``."""

    module: str  # in rasa_server
    replaces: Upstream
    why: str
    relies_on: Tuple[Upstream, ...] = ()

    @property
    def file(self) -> str:
        """The module's file, as the error messages name it."""
        return f"rasa_server/{self.module}.py"


REPLACEMENTS: Tuple[Replacement, ...] = (
    Replacement(
        "action_validation",
        Upstream(
            "rasa.core.actions.action.RemoteAction._validate_action_result",
            "f8cdb4be6812396167ced74161b2ccd65c5ea676ad86d7d359d8c322d9d8dc42",
            "_UPSTREAM",
        ),
        "jsonschema.validate re-checked the events schema against its meta-schema on every call",
        relies_on=(
            Upstream(
                "rasa.core.actions.action.RemoteAction.action_response_format_spec",
                "091b74aa3738d1262cf3c028386aaf9dd4f0d5c1374b62392411d70a79104a46",
            ),
        ),
    ),
    Replacement(
        "event_bodies",
        Upstream(
            "rasa.server.validate_events_in_request_body",
            "8e1d7dc6a84151120ac363842060f751dd63e6d31be011d970d2b90873b795c3",
            "_UPSTREAM",
        ),
        "jsonschema.validate re-checked the events schema against its meta-schema on every appended event",
    ),
    Replacement(
        "graph_runner",
        Upstream("rasa.core.processor.DaskGraphRunner", "78a7d146c5c06d4cfd29638bbb20192183bfcd8cc69d2cb2be198c8e87a4c134", "_UPSTREAM"),
        "dask rebuilt the schema and a dask graph and scheduled ~20 nodes on every graph run",
    ),
    Replacement(
        "json_bodies",
        Upstream(
            "rasa.utils.endpoints.EndpointConfig.session", "e55aa13d9d4fb4bc440ac33b870a97ee162b76dda7ccb6bf68433567475fdffb", "_UPSTREAM"
        ),
        "the standard library's JSON encoder was half of an action call's CPU",
    ),
    Replacement(
        "sparse_features",
        Upstream(
            "rasa.shared.nlu.training_data.features.Features._combine_sparse_features",
            "9837d864e5983243704cf14616ef9abe181c6f141cc0f9b324c4310629cc133d",
            "_UPSTREAM",
        ),
        "scipy.sparse.hstack goes through bmat: 0.21 ms per join, four to five joins a message",
    ),
    Replacement(
        "tracker_copy",
        Upstream(
            "rasa.shared.core.trackers.DialogueStateTracker.copy",
            "dfa48dca9f355ad1b42c625bc6f6370bafe83514ed17a77904ed64c67bf07285",
            "_UPSTREAM_COPY",
        ),
        "a tracker copy replayed every event of the conversation, before every action",
    ),
    Replacement(
        "training",
        Upstream(
            "rasa.engine.training.graph_trainer.GraphTrainer.train",
            "61837cd6d73a6cab4f44365eeee2ab86d1341800ac87dced8d4cbf138ab33880",
            "_UPSTREAM_TRAIN",
        ),
        "a forced training fingerprinted every node's output for a cache it never reads",
        relies_on=(
            Upstream("rasa.engine.training.hooks.TrainingHook", "2f73b837731d8ff48ecad18da4e90b6cbec36685d17cf6b0b63c30bfeee09e63"),
        ),
    ),
    Replacement(
        "training",
        Upstream(
            "rasa.shared.nlu.training_data.util.sparse_matrix_to_string",
            "df9d5909b2b5a0ba39ed745169a54ec7611393a7a189e9f51a610e3e8c1e97e5",
            "_UPSTREAM_TO_STRING",
        ),
        "fingerprints printed every sparse entry through numpy scalars",
    ),
    Replacement(
        "training",
        Upstream(
            "rasa.utils.tensorflow.data_generator.RasaDataGenerator._scipy_matrix_to_values",
            "53d2e4842e1946baa5137e297c52f6c9e727fa25f7ca94ea2b7fd4bce04d4b04",
            "_UPSTREAM_TO_VALUES",
        ),
        "every batch of every epoch ran three numpy stacks per example",
    ),
)


def pinned_rasa_version() -> str:
    """The Rasa version pyproject.toml pins (``rasa==X``), read from the installed project."""
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise ReplacementCheckError(
            f"the project ({DISTRIBUTION}) is not installed, so the Rasa version pinned in "
            f"pyproject.toml cannot be read: run `pip install -e .` in the repository"
        ) from e
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name == "rasa" and not requirement.marker:
            pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            if len(pins) == 1 and len(requirement.specifier) == 1:
                return pins[0]
            raise ReplacementCheckError(
                f"pyproject.toml's rasa dependency is {line!r}: the replacements need one exact "
                f"version (rasa==X), the one they were checked against"
            )
    raise ReplacementCheckError(f"pyproject.toml ({DISTRIBUTION}) has no rasa dependency")


def resolve(path: str) -> Any:
    """The object a dotted path names: the longest importable module, then its attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(f"no module in {path!r}")


def source_sha256(target: Any) -> str:
    """SHA-256 of an object's source as ``inspect.getsource`` gives it."""
    return hashlib.sha256(inspect.getsource(target).encode("utf-8")).hexdigest()


def checked(replacement: Replacement) -> Iterator[Tuple[Upstream, str]]:
    """Each upstream object of a row with how its module uses it ("replaced by"/"relied on by")."""
    yield replacement.replaces, "replaced by"
    for upstream in replacement.relies_on:
        yield upstream, "relied on by"


def upstream_object(replacement: Replacement, upstream: Upstream) -> Any:
    """Rasa's own object: as the module kept it (so also after its ``install()``), or from
    its path (the objects relied on, which nothing replaces)."""
    if upstream.kept_as is None:
        return resolve(upstream.path)
    return getattr(importlib.import_module(f"rasa_server.{replacement.module}"), upstream.kept_as)


def mismatch(upstream: Upstream, found: str, role: str, file: str, table: str) -> Optional[str]:
    """What to tell when ``found`` (the installed source's SHA-256) is not the hash ``file``
    was checked against (``role``: how the file uses it; ``table``: the file that holds the
    hash); ``None`` when it is."""
    if found == upstream.sha256:
        return None
    return (
        f"{upstream.path} ({role} {file}): its source's SHA-256 is {found}, expected "
        f"{upstream.sha256}. Re-check {file} against the new upstream source, then update "
        f"the hash in {table}."
    )


def require_unchanged(file: str, upstreams: Tuple[Upstream, ...]) -> None:
    """Raise ``ReplacementCheckError`` unless every upstream method a registered component or
    policy (in ``file``) re-implements still has the source it was checked against."""
    import rasa

    problems = [
        problem
        for upstream in upstreams
        if (problem := mismatch(upstream, source_sha256(resolve(upstream.path)), "re-implemented by", file, file))
    ]
    if problems:
        raise ReplacementCheckError(
            f"upstream code {file} re-implements has changed in Rasa {rasa.__version__}; refusing to build it:\n- " + "\n- ".join(problems)
        )


def check_all() -> None:
    """Raise ``ReplacementCheckError`` unless the installed Rasa is the pinned one and every
    checked source is unchanged; the message names every mismatch and what to do."""
    import rasa

    pinned = pinned_rasa_version()
    if rasa.__version__ != pinned:
        raise ReplacementCheckError(
            f"Rasa {rasa.__version__} is installed, but rasa_server's replacements were checked "
            f"against Rasa {pinned} (the pin in pyproject.toml). Install rasa=={pinned} "
            f"(`pip install -e .`), or re-check every module in rasa_server/replacements.py's "
            f"table against the new Rasa, then update its hashes and the pin."
        )
    problems: List[str] = []
    for replacement in REPLACEMENTS:
        for upstream, role in checked(replacement):
            found = source_sha256(upstream_object(replacement, upstream))
            problem = mismatch(upstream, found, role, replacement.file, "rasa_server/replacements.py")
            if problem:
                problems.append(problem)
    if problems:
        raise ReplacementCheckError(
            f"upstream code the runtime replaces has changed in Rasa {rasa.__version__}; refusing to start:\n- " + "\n- ".join(problems)
        )


def install_all() -> None:
    """Check (``check_all``), then install every replacement in this process; nothing is
    installed when the check fails."""
    check_all()
    for module in dict.fromkeys(replacement.module for replacement in REPLACEMENTS):
        importlib.import_module(f"rasa_server.{module}").install()


if __name__ == "__main__":
    for row in REPLACEMENTS:
        for entry, how in checked(row):
            print(f"{entry.path} ({how} {row.file})\n  expected {entry.sha256}\n  found    {source_sha256(upstream_object(row, entry))}")
