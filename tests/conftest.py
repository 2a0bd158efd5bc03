"""Test-session settings: float64 available, and no silent rank promotion.

x64 is on so that float64 trajectories can be compared with torch to 1e-12; float32 tests
ask for float32 explicitly. `jax_numpy_rank_promotion="raise"` makes an accidental
(n,) against (n, 1) broadcast fail loudly instead of producing an (n, n) array.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
