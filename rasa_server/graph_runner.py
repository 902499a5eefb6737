"""Run the predict graph in a precomputed order instead of through dask.

Rasa 3.6's ``DaskGraphRunner.run`` rebuilds the minimal schema and a dask graph for every
call, then lets dask's scheduler order and run ~20 nodes. A message makes one NLU run and
two to four policy runs; py-spy had dask's own bookkeeping at ~10 % of a message's CPU.
The predict graph is fixed once the model is loaded, so the order of each set of targets is
computed once and the nodes are called in it, with the inputs dask would have given them.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Text, Tuple

from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner

# What rasa.core.processor loads the predict graph into (rasa_server.replacements checks its source)
_UPSTREAM = DaskGraphRunner

# node name -> the names (node or input) its arguments come from, in order
_Plan = List[Tuple[Text, List[Text]]]


class SequentialGraphRunner(DaskGraphRunner):
    """``DaskGraphRunner`` with the same results, minus the per-call scheduling.

    Each node gets what dask would pass it: the ``(name, output)`` pair of every
    dependency that ran or was given as an input, and the bare name of one that is
    neither (``GraphNode`` warns about those). Nodes run one after the other in an order
    where every node follows its dependencies, the order dask's synchronous scheduler
    also keeps. Install with ``install()`` (``rasa_server`` does) before Rasa loads a model.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: Dict[Tuple[Tuple[Text, ...], FrozenSet[Text]], _Plan] = {}

    def _plan(self, targets: Tuple[Text, ...], given: FrozenSet[Text]) -> _Plan:
        """Every node of the targets' minimal schema (the tasks dask would run), each after
        its dependencies, with the names its arguments come from. A given input stands in
        for the node of its name, as it replaces that node in the dask graph."""
        plan = self._plans.get((targets, given))
        if plan is None:
            schema = self._graph_schema.minimal_graph_schema(list(targets))
            plan, placed = [], set(given)

            def place(name: Text) -> None:
                if name in placed or name not in schema.nodes:
                    return
                placed.add(name)
                needs = list(schema.nodes[name].needs.values())
                for dependency in needs:
                    place(dependency)
                plan.append((name, needs))

            for name in schema.nodes:
                place(name)
            self._plans[(targets, given)] = plan
        return plan

    def run(
        self,
        inputs: Optional[Dict[Text, Any]] = None,
        targets: Optional[List[Text]] = None,
    ) -> Dict[Text, Any]:
        """Runs the graph (see ``GraphRunner.run``): same outputs and errors as dask's."""
        run_targets = tuple(targets if targets else self._graph_schema.target_names)
        outputs: Dict[Text, Any] = {}
        for name, value in (inputs or {}).items():
            if isinstance(value, str) and value in self._graph_schema.nodes:
                raise GraphRunError(
                    f"Input value '{value}' clashes with a node name. Make sure "
                    f"that none of the input names passed to the `run` method are the "
                    f"same as node names in the graph schema."
                )
            outputs[name] = (name, value)
        try:
            for name, needs in self._plan(run_targets, frozenset(outputs)):
                node = self._instantiated_nodes[name]
                outputs[name] = node(*(outputs.get(need, need) for need in needs))
        except RuntimeError as e:  # dask's scheduler surfaces these as GraphRunError
            raise GraphRunError("Error running runner.") from e
        missing = [target for target in run_targets if target not in outputs]
        if missing:
            raise GraphRunError(f"Error running runner: no node or input named {missing}.")
        return dict(outputs[target] for target in run_targets)


def install() -> None:
    """Make Rasa's message processor load its predict graph into this runner."""
    import rasa.core.processor

    rasa.core.processor.DaskGraphRunner = SequentialGraphRunner
