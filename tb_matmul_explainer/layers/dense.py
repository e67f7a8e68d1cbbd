"""`keras.layers.Dense`: z = x @ kernel over the input's last axis, units = the kernel's columns.

The patched call is Keras' Dense.call with z explicit: `kops.matmul(x, kernel)`, then bias and activation. Its
per-unit totals are `aggregates.dense*` with the input's leading axes aggregated. `DenseAdapter` also serves as the
base of kinds that reduce to a dense matmul after reshaping (`as_dense`, `as_dense_gradient`: EinsumDense).
"""

import tensorflow as tf
from keras import layers as keras_layers
from keras import ops as kops

from tb_matmul_explainer import aggregates
from tb_matmul_explainer.layers.base import Adapter


class DenseAdapter(Adapter):
    kind = "dense"
    layer_types = (keras_layers.Dense,)
    shares_records = True

    def patched_call(self, recorder, target):
        layer = target.layer

        def call(inputs, training=None):
            m = recorder._explain(target, inputs, kops.convert_to_tensor(layer.kernel), kops.matmul, None)
            return recorder._activate(target, m, layer.bias, layer.activation)

        return call

    def as_dense(self, target, x, kernel, y):
        """The operands as a dense matmul: x [..., C], kernel [C, U], y (z or d_out) [..., U]."""
        return x, kernel, y

    def as_dense_gradient(self, target, x, d_out, kernel_shape):
        """Kernel-gradient operands as dense ones: x [..., C], d_out [..., U], and the kernel shape [C, U]."""
        return x, d_out, tf.TensorShape(kernel_shape)

    def forward_totals(self, target, x, kernel, z, geometry, options):
        x, kernel, z = self.as_dense(target, x, kernel, z)
        return aggregates.dense(x, kernel, result=z, options=options)

    def kernel_gradient_totals(self, target, x, d_out, kernel_shape, geometry, result, options):
        x, d_out, shape = self.as_dense_gradient(target, x, d_out, kernel_shape)
        if result is not None:
            result = tf.reshape(result, shape)
        return aggregates.dense_kernel_gradient(x, d_out, result=result, options=options)

    def input_gradient_totals(self, target, x, d_out, kernel, geometry, options):
        _, kernel, d_out = self.as_dense(target, x, kernel, d_out)
        return aggregates.dense_input_gradient(d_out, kernel, options=options)

    def kernel_gradient(self, target, x, d_out, kernel_shape, geometry):
        x, d_out, _ = self.as_dense_gradient(target, tf.cast(x, tf.float32), d_out, kernel_shape)
        x2 = tf.reshape(x, [-1, x.shape[-1]])
        d2 = tf.reshape(d_out, [-1, d_out.shape[-1]])
        return tf.reshape(tf.matmul(x2, d2, transpose_a=True), kernel_shape)


ADAPTER = DenseAdapter()
