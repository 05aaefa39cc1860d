"""`drivesim demo`: the shipped tiny cascade replays a held-out synthetic scene, and says how good it is.

Steps (drivesim.demo.run): find the cascade (the packaged `drivesim/assets/demo_cascade` or
`cascade=`), render the protocol's held-out scene into `<out>/synth`, replay its boxes, labels and
ego motion through `drivesim generate`'s engine from its first two rendered key frames, write the
rendered scene beside the generated one, and measure the cheap synthetic-domain metrics with
`drivesim.metrics.evaluate_folder`.
"""

from drivesim.demo.run import DemoError, packaged_cascade, run_demo

__all__ = ["DemoError", "packaged_cascade", "run_demo"]
