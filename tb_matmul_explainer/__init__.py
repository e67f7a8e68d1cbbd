"""tb-matmul-explainer: explain near-zero matmul and convolution results in TensorBoard.

Modules (one job each):
  validation  argument checks and the dtype policy shared by every public function
  threshold   the near-zero threshold: exact O(N) percentile and a sampled estimate
  ops         exact per-cell nine-pair classifiers (drop-in for the research code)
  aggregates  fast factorised per-unit totals used by summaries
  metadata    plugin name and the versioned on-disk summary contract
  summary     tf.summary-style writer ops
  keras       Keras 3 callback and custom-loop recorder that record chosen layers
  layers      one adapter per Keras layer kind (which layers, their captured calls, units and explanations)
  internals   every access to private Keras/TensorFlow APIs
  graph       which layer produced a layer's input
  explain     plain-language diagnosis
  plugin      TensorBoard backend
"""

__version__ = "0.1.0"
