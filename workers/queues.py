"""Queue and task names. Every task is routed explicitly; tests check that every
queue here has a consumer in `hookline worker`."""

DRAIN = "hookline-drain"
FANOUT = "hookline-fanout"
PERIODIC = "hookline-periodic"

ALL = (DRAIN, FANOUT, PERIODIC)

TASK_DRAIN = "hookline.drain"
TASK_TICK = "hookline.tick"
TASK_DISPATCH = "hookline.dispatch"
TASK_FANOUT_TICK = "hookline.fanout_tick"
TASK_PURGE = "hookline.purge"
