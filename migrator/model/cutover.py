"""Where an account stands in the cut-over of its mail routing, and how a cut-over wave went.

The values are what the state database stores (`accounts.cutover`, `cutover_waves.status`,
`cutover_steps.status`) and what `status --json` and reports show: never change one.
"""

from __future__ import annotations

import enum


class CutoverState(enum.StrEnum):
    """`accounts.cutover`; NULL: not switched. Written by `migrator cutover` only."""

    SWITCHING = "switching"  # in the transport map, the switch not yet confirmed live
    SWITCHED = "switched"  # Postfix sends the mail to the target; the final delta pass is to come
    CUT_OVER = "cut-over"  # the final delta pass is done
    REVERTING = "reverting"  # a rollback takes it out of the map


# in the transport map: Postfix sends these accounts' mail to the target
ROUTED = (CutoverState.SWITCHING, CutoverState.SWITCHED, CutoverState.CUT_OVER)


class WaveStatus(enum.StrEnum):
    """`cutover_waves.status`: one `migrator cutover` (or rollback) over a selection."""

    RUNNING = "running"
    FAILED = "failed"  # stopped at a step; the same command resumes it
    SWITCHED = "switched"  # the map is live; the final delta passes are to come
    FINISHED = "finished"
    ROLLED_BACK = "rolled-back"  # none of its accounts is routed any more


# a wave the same command resumes
WAVE_OPEN = (WaveStatus.RUNNING, WaveStatus.FAILED, WaveStatus.SWITCHED)


class StepStatus(enum.StrEnum):
    """`cutover_steps.status`: one step of a wave."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
