// What both kernel-vs-twin tests expect of a deployed layer's activation.
import MaxQTensor

/// A twin's output (`twin(lower, upper)`, its clamp) with `activation` as the deployed layers
/// apply it: ReLU and ReLU6 as the clamp, any other activation after an unclamped twin.
func twinOutput(_ activation: Activation?, _ twin: (Float, Float) -> Tensor) -> Tensor {
    switch activation {
    case .relu: return twin(0, .infinity)
    case .relu6: return twin(0, 6)
    case nil: return twin(-.infinity, .infinity)
    case let other?:
        let y = twin(-.infinity, .infinity)
        return y.backend.activation(other, y)
    }
}
