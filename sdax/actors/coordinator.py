"""The coordinator: the one state machine of a run.

Guarantees, each kept in one place below:

1. A pre starts when every dependency has passed the PRE gate. A node passes
   when its pre succeeds or, having no pre, when its own dependencies have
   passed; so a pre starts exactly when its effective pre-dependencies have
   succeeded, which is the wave rule. (`Flow.finish`, `_launch`)
2. After the first pre failure, fatal error, caller cancellation or the
   deadline, nothing new starts but cleanup, and what runs forward is told
   to stop, with a reason. (`_abort`)
3. Each phase of each task starts at most once; an interrupted phase is
   never replayed. (`_start`)
4. Cleanup is owed by a task whose pre function was entered, or that has no
   pre and whose chain passed; a pre cancelled before its first step
   acquired nothing. (`_enter_post`, `_on_phase_ended`)
5. A post starts once every dependent has finished its cleanup or owes
   none: reverse dependency order, no barrier the graph does not need. (`Flow.finish`)
6. Cleanup is shielded: nothing the caller does stops a post or keeps one
   from starting. Only the post's own cleanup_timeout or the run's cleanup
   budget does, and the budget reports every post it cuts or skips as a
   CleanupAbandonedError. (`_on_caller_cancelled`, `_on_cleanup_budget`)
7. The coordinator never awaits user code, only its mailbox. It runs in the
   task that awaits the run, so the caller's cancellations land there; the
   first is recorded and re-raised after cleanup. None is swallowed or
   uncancelled, so `asyncio.timeout` around a run still works.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from sdax.actors.admission import Admission
from sdax.actors.flow import WAITING, Flow
from sdax.actors.mailbox import Mailbox
from sdax.actors.messages import (
    CleanupBudgetExpired,
    DeadlineExpired,
    Event,
    PhaseCancelled,
    PhaseFailed,
    PhaseRetrying,
    PhaseSucceeded,
    SlotsGranted,
)
from sdax.actors.outcome import Outcome
from sdax.actors.task_actor import RunScope, TaskActor, phase_starters
from sdax.actors.watch import RunWatch
from sdax.errors import CleanupAbandonedError, annotate
from sdax.graph import TaskGraph
from sdax.run_options import DEFAULT_OPTIONS, RunKeywords
from sdax.vocabulary import CancelReason, PhaseId

PRE, EXECUTE, POST = PhaseId.PRE_EXEC, PhaseId.EXECUTE, PhaseId.POST_EXEC

# Set by sdax.testing: shuffles every batch of ready tasks, so nobody relies
# on an order that was never promised.
release_shuffle: ContextVar[random.Random | None] = ContextVar("sdax_release_shuffle", default=None)


class RunState(enum.Enum):
    """Where a run is. Transitions are checked in `_transition`."""

    IDLE = "idle"  # nothing started
    PRE = "pre"  # pres start as their dependencies pass
    EXECUTE = "execute"  # every execute runs; a failure does not stop the others
    ABORTING = "aborting"  # running work is being cancelled; nothing new starts; POST is next
    POST = "post"  # cleanup in reverse dependency order; nothing the caller does stops it
    ABANDONING = "abandoning"  # the cleanup budget expired: running posts are cancelled
    DONE = "done"

    # Looked up in the tables below on every phase of every run; Enum's own
    # __hash__ is Python code, the identity hash is consistent for singletons.
    __hash__ = object.__hash__


_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.IDLE: frozenset({RunState.PRE, RunState.DONE}),
    RunState.PRE: frozenset({RunState.EXECUTE, RunState.ABORTING}),
    RunState.EXECUTE: frozenset({RunState.POST, RunState.ABORTING}),
    RunState.ABORTING: frozenset({RunState.POST}),
    RunState.POST: frozenset({RunState.ABANDONING, RunState.DONE}),
    RunState.ABANDONING: frozenset({RunState.DONE}),
    RunState.DONE: frozenset(),
}

# The phase to run next once everything running has stopped.
_NEXT_PHASE: dict[RunState, PhaseId | None] = {
    RunState.IDLE: PRE,
    RunState.PRE: EXECUTE,
    RunState.EXECUTE: POST,
    RunState.ABORTING: POST,
    RunState.POST: None,
    RunState.ABANDONING: None,
    RunState.DONE: None,
}

# The flow whose ready nodes may start in each state: PRE only going forward,
# POST only until the budget expires.
_STARTS: dict[RunState, PhaseId | None] = {
    RunState.IDLE: None,
    RunState.PRE: PRE,
    RunState.EXECUTE: None,
    RunState.ABORTING: None,
    RunState.POST: POST,
    RunState.ABANDONING: None,
    RunState.DONE: None,
}


class Coordinator:
    """Runs one context through a task graph, phase by phase."""

    __slots__ = (
        "_graph",
        "_state",
        "_mailbox",
        "_scope",
        "_actors",
        "_in_flight",
        "_pre",
        "_flow",
        "_through",
        "outcome",
        "_last_phase",
        "_shuffle",
        "_admission",
        "_options",
        "_deadline",
        "_budget_timer",
        "_watch",
        "_bare",
    )

    def __init__(
        self, graph: TaskGraph, ctx: object, options: RunKeywords = DEFAULT_OPTIONS
    ) -> None:
        self._graph = graph
        self._state = RunState.IDLE
        loop = asyncio.get_running_loop()
        self._mailbox: Mailbox[Event] = Mailbox()
        observers = options.get("observers", ())
        # None when nobody listens, so each check on the hot path is a plain `is` test.
        self._watch = RunWatch(observers, graph, options.get("tag")) if observers else None
        clock = time.perf_counter if observers else None  # events carry times if observed
        rng = options.get("rng") or _default_rng
        self._scope = RunScope(ctx, self._mailbox, rng, phase_starters(loop), clock)
        self._admission = Admission(self._mailbox) if graph.any_limits else None
        self._options = options
        self._actors: list[TaskActor | None] = [None] * len(graph)  # created at first start
        # invariant: the phases started whose end has not been handled yet
        self._in_flight = 0
        self._pre = Flow(PRE, graph.dependents, list(graph.dependency_counts), graph.has_pre)
        # The flow completions spread through: PRE, then a POST flow built when
        # POST starts, since who owes cleanup is known only then.
        self._flow = self._pre
        # Nodes through the flow's phase in the batch being handled; spread after it.
        self._through: list[int] = []
        self.outcome = Outcome()  # what happened, and so what the run raises
        self._last_phase: PhaseId | None = None
        self._shuffle = release_shuffle.get()
        self._deadline: asyncio.TimerHandle | None = None  # timeout: PRE and EXECUTE together
        self._budget_timer: asyncio.TimerHandle | None = None
        # No limits to give back and nobody watching: a success needs only counting.
        self._bare = self._admission is None and self._watch is None

    # -- driving -----------------------------------------------------------------

    @property
    def next_phase(self) -> PhaseId | None:
        """The phase `run_phase` runs next, or None when the run is over."""
        return _NEXT_PHASE[self._state]

    @property
    def last_phase(self) -> PhaseId | None:
        return self._last_phase

    async def run(self) -> None:
        """Run every phase that is due, then raise what the run ended with, if anything."""
        while _NEXT_PHASE[self._state] is not None:
            await self.run_next_phase()
        error = self.outcome.raises()
        if error is not None:
            raise error

    async def run_next_phase(self) -> None:
        """Run the phase that is due until everything it started has stopped.

        Events that arrived between phases (an expired deadline) are handled
        first, so they can change which phase is due. What arrived during the
        phase is in `outcome`, whose caller decides when to raise it.
        """
        if self._mailbox.pending:
            self._handle_delivered()
        phase = _NEXT_PHASE[self._state]
        if phase is None:
            raise RuntimeError("the run is over: no phase is left to run")
        self._last_phase = phase
        mailbox, admission = self._mailbox, self._admission
        try:
            _ENTER[phase](self)
            # Busy while phases run, or wait for slots that other phases will give
            # back. Inline rather than a coroutine of its own: every level of
            # coroutine is paid again each time the run resumes.
            while self._in_flight or (admission is not None and admission.waiting):
                if mailbox.pending:
                    self._handle_delivered()
                    continue
                try:
                    await mailbox.wait()
                except asyncio.CancelledError as cancel:
                    self._on_caller_cancelled(cancel)
        except BaseException:
            await self._abandon()  # a bug in sdax itself: still leave nothing running
            raise
        if phase is POST:
            self._finish()

    def skip_execute(self) -> None:
        """Between phases, give up going forward: if EXECUTE was next, POST is next instead."""
        if self._state is RunState.PRE:
            self._transition(RunState.ABORTING)

    def close_unstarted(self) -> None:
        """End a run that never started: nothing ran, so nothing is owed."""
        self._transition(RunState.DONE)
        self.outcome.close()

    def _finish(self) -> None:
        if self._budget_timer is not None:
            self._budget_timer.cancel()
        self._transition(RunState.DONE)
        self.outcome.close()
        if self._watch is not None:
            self._watch.run_finished(self.outcome.raises())

    def _handle_delivered(self) -> None:
        """Handle every event in the mailbox, including any that handling delivers.

        The completions of a batch are spread through the flow together once
        the whole batch is read: one walk per batch, not per event, and a
        failure in the batch is known before anything it dooms is started.
        """
        mailbox, through, bare = self._mailbox, self._through, self._bare
        # Nearly every event of a run is a success. In a bare run all a success
        # needs is counted here, inline: the same as `_on_phase_ended` does for
        # it, minus a call per phase.
        while mailbox.pending:
            for event in mailbox.take_all():
                if bare and type(event) is PhaseSucceeded:
                    self._in_flight -= 1
                    if event.phase is not EXECUTE:
                        through.append(event.task)
                else:
                    _EVENT_HANDLERS[type(event)](self, event)
            if through:
                flow = self._flow
                self._launch(flow, flow.finish(through))

    # -- entering phases -----------------------------------------------------------

    def _enter_pre(self) -> None:
        self._transition(RunState.PRE)
        if self._watch is not None:
            self._watch.run_started()
        timeout = self._options.get("timeout")
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(timeout, self._mailbox.put, DEADLINE_EXPIRED)
        if self._graph.any_pre:
            self._launch(self._pre, self._pre.start_at(self._graph.roots))
        else:
            self._pre.pass_everything()

    def _enter_execute(self) -> None:
        self._transition(RunState.EXECUTE)
        self._start(EXECUTE, self._graph.executes)

    def _enter_post(self) -> None:
        # A task owes cleanup if its pre started, or it has no pre and its chain
        # passed. After EXECUTE, PRE was complete, every node passed: all are owed.
        graph, gate = self._graph, self._pre.progress
        owes: Sequence[bool] = (
            graph.has_post
            if self._state is RunState.EXECUTE
            else [post and gate[node] != WAITING for node, post in enumerate(graph.has_post)]
        )
        self._transition(RunState.POST)
        if self._deadline is not None:
            self._deadline.cancel()  # the deadline bounds PRE and EXECUTE only
        post = self._flow = Flow(POST, graph.dependencies, list(graph.dependent_counts), owes)
        if graph.any_post and any(owes):  # else no cleanup is owed: nothing to walk
            budget = self._options.get("cleanup_budget")
            if budget is not None:
                loop = asyncio.get_running_loop()
                self._budget_timer = loop.call_later(
                    budget, self._mailbox.put, CLEANUP_BUDGET_EXPIRED
                )
            self._launch(post, post.start_at(graph.tips))

    # -- spreading completion --------------------------------------------------------

    def _launch(self, flow: Flow, ready: list[int]) -> None:
        """Start what `flow` says is ready, if the run's state still starts that phase."""
        if ready and _STARTS[self._state] is flow.phase:
            self._start(flow.phase, ready)

    def _start(self, phase: PhaseId, nodes: Sequence[int]) -> None:
        """Start `phase` for `nodes`, or queue those whose limits are not free yet."""
        if self._shuffle is not None:
            nodes = list(nodes)
            self._shuffle.shuffle(nodes)
        if self._admission is not None and phase is not POST:
            nodes = self._admit(phase, nodes)
        self._begin(phase, nodes)

    def _admit(self, phase: PhaseId, nodes: Sequence[int]) -> list[int]:
        """The nodes whose limits were granted at once; the others hear by SlotsGranted."""
        admission, graph_nodes = self._admission, self._graph.nodes
        assert admission is not None
        return [
            node
            for node in nodes
            if not (uses := graph_nodes[node].limits.get(phase))
            or admission.request(node, phase, uses)
        ]

    def _begin(self, phase: PhaseId, nodes: Sequence[int]) -> None:
        if phase is not EXECUTE:
            # PRE: cleanup is owed from here on, unless the pre is cancelled before
            # it is entered. POST: no longer pending, should the budget expire.
            self._flow.mark_reached(nodes)
        if self._watch is not None:
            # Before the starts: from 3.12 a phase starts eagerly and may have
            # finished (and been timed) by the time `start` returns.
            self._watch.phases_started(phase, nodes)
        self._in_flight += len(nodes)
        # each post, all its attempts, within the run's cleanup_timeout
        within = self._options.get("cleanup_timeout") if phase is POST else None
        actors = self._actors
        for node in nodes:
            actor = actors[node]
            if actor is None:
                actor = actors[node] = TaskActor(self._graph.nodes[node], self._scope)
            actor.start(phase, within)

    # -- events --------------------------------------------------------------------

    def _on_phase_ended(self, event: PhaseSucceeded | PhaseFailed | PhaseCancelled) -> None:
        # Whatever the outcome, the phase runs no more and holds no slot.
        self._in_flight -= 1
        if self._admission is not None:
            self._admission.release(event.task)
        if type(event) is PhaseCancelled:
            if event.reason is CancelReason.CLEANUP_BUDGET:  # a cleanup cut short: a failure
                error = self._abandoned(event.task, started=event.attempts > 0)
                event = PhaseFailed(
                    task=event.task, phase=POST, error=error, at=event.at, attempts=event.attempts
                )
            elif event.attempts == 0 and event.phase is PRE:
                self._pre.withdraw(event.task)  # never entered: it acquired nothing
        if self._watch is not None:
            self._watch.phase_ended(event)
        if isinstance(event, PhaseSucceeded):  # (inlined in `_handle_delivered` when bare)
            if event.phase is not EXECUTE:  # the task is through its pre or its cleanup
                self._through.append(event.task)
            return
        if event.phase is POST:
            self._through.append(event.task)  # a cleanup is over however it ended
        if isinstance(event, PhaseFailed):
            self._record_failure(event)

    def _on_retrying(self, event: PhaseRetrying) -> None:
        if self._watch is not None:
            self._watch.phase_retried(event)

    def _on_slots_granted(self, event: SlotsGranted) -> None:
        assert self._admission is not None
        # A grant withdrawn by an abort before this event was read is void.
        if self._admission.claim(event.task):
            self._begin(event.phase, [event.task])

    def _record_failure(self, event: PhaseFailed) -> None:
        fatal = self.outcome.failed(self._graph.keys[event.task], event.phase, event.error)
        if event.phase is POST:
            return  # a failed cleanup never stops the others
        if fatal:
            self._abort(CancelReason.FATAL_ERROR)
        elif event.phase is PRE:
            self._abort(CancelReason.SIBLING_FAILED)

    def _on_deadline(self, event: DeadlineExpired) -> None:
        # Only a run still going forward times out; a failing one keeps its failures.
        if self._state in (RunState.PRE, RunState.EXECUTE):
            timeout = self._options.get("timeout")
            assert timeout is not None
            self.outcome.deadline_passed(timeout)
            self._abort(CancelReason.DEADLINE)

    def _on_caller_cancelled(self, cancel: asyncio.CancelledError) -> None:
        # Every cancellation is absorbed here and the first re-raised once the
        # run is over; in POST it stops nothing (cleanup is shielded).
        self.outcome.caller_cancelled(cancel)
        self._abort(CancelReason.CALLER_CANCELLED)

    def _on_cleanup_budget(self, event: CleanupBudgetExpired) -> None:
        if self._state is not RunState.POST:
            return  # the timer fired as the last post ended: nothing was cut
        self._transition(RunState.ABANDONING)
        post = self._flow
        for node, owed in enumerate(post.runs):
            if owed and post.progress[node] == WAITING:  # owed, never started: skipped
                error = self._abandoned(node, started=False)
                self.outcome.failed(self._graph.keys[node], POST, error)
                if self._watch is not None:
                    self._watch.phase_abandoned(node, error)
        self._cancel_all(CancelReason.CLEANUP_BUDGET)  # each running post reports its end

    def _abandoned(self, node: int, *, started: bool) -> CleanupAbandonedError:
        key, budget = self._graph.keys[node], self._options.get("cleanup_budget")
        assert budget is not None
        error = CleanupAbandonedError(key, POST.value, budget, started)
        annotate(error, f"sdax: task {key!r} {POST} abandoned by the run's cleanup budget")
        return error

    def _abort(self, reason: CancelReason) -> None:
        """Stop going forward: cancel the pres and executes that run. Never cleanup."""
        if self._state not in (RunState.PRE, RunState.EXECUTE):
            # ABORTING: what ran was told to stop on the way in, and nothing has
            # started since. POST: cleanup is shielded from every reason to abort.
            return
        self._transition(RunState.ABORTING)
        if self._admission is not None:
            self._admission.withdraw()  # waiting phases never started: nothing is owed
        self._cancel_all(reason)

    def _cancel_all(self, reason: CancelReason) -> None:
        for actor in self._actors:
            if actor is not None:
                actor.cancel(reason)  # an actor with no phase running ignores it

    async def _abandon(self) -> None:
        """After an internal error: stop every phase task, give back every slot."""
        for timer in (self._deadline, self._budget_timer):
            if timer is not None:
                timer.cancel()
        if self._admission is not None:
            self._admission.withdraw()
            self._admission.release_all()
        tasks = [actor.abandon() for actor in self._actors if actor is not None]
        self._in_flight = 0
        if tasks := [task for task in tasks if task is not None]:
            await asyncio.wait(tasks)

    def _transition(self, new: RunState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise AssertionError(f"illegal run transition {self._state.value} -> {new.value}")
        self._state = new

    def __repr__(self) -> str:
        return (
            f"<Coordinator {self._state.value}: {self._in_flight} running, "
            f"{len(self.outcome.failures)} failed>"
        )


_default_rng = random.Random()

_ENTER: dict[PhaseId, Callable[[Coordinator], None]] = {
    PRE: Coordinator._enter_pre,
    EXECUTE: Coordinator._enter_execute,
    POST: Coordinator._enter_post,
}

_EVENT_HANDLERS: dict[type[Any], Callable[[Coordinator, Any], None]] = {
    PhaseSucceeded: Coordinator._on_phase_ended,
    PhaseFailed: Coordinator._on_phase_ended,
    PhaseCancelled: Coordinator._on_phase_ended,
    PhaseRetrying: Coordinator._on_retrying,
    SlotsGranted: Coordinator._on_slots_granted,
    DeadlineExpired: Coordinator._on_deadline,
    CleanupBudgetExpired: Coordinator._on_cleanup_budget,
}

DEADLINE_EXPIRED = DeadlineExpired()
CLEANUP_BUDGET_EXPIRED = CleanupBudgetExpired()
