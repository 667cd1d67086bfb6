//! Gradients as one flat vector, so methods can combine loss terms the way the papers do
//! (norm-fixed subtraction, BOME projection, weighted sums, closed-form penalties).
//!
//! Burn has no `retain_graph`: each loss term's gradient comes from its own backward pass
//! (and, when two terms share one prediction, its own forward pass of the same inputs).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Shape, Tensor, TensorData};

use crate::diffusion::unet::UNet;

/// Where each parameter lives in the flat vector (module visit order).
#[derive(Debug, Clone)]
pub struct Layout {
    slots: Vec<Slot>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Slot {
    id: Option<ParamId>,
    shape: Shape,
    offset: usize,
    len: usize,
}

impl Layout {
    pub fn of(model: &UNet) -> Self {
        struct Collect(Vec<Slot>, usize);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let shape = param.val().shape();
                let len = shape.num_elements();
                self.0.push(Slot {
                    id: Some(param.id),
                    shape,
                    offset: self.1,
                    len,
                });
                self.1 += len;
            }
        }
        let mut c = Collect(vec![], 0);
        model.visit(&mut c);
        Self {
            slots: c.0,
            len: c.1,
        }
    }

    /// Total number of scalar parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The gradient of one loss term (or a combination) over all parameters.
#[derive(Clone)]
pub struct GradVec {
    flat: Tensor<1>,
    layout: Layout,
}

impl GradVec {
    /// Backward pass of `loss` (consumes its graph) collected in the model's layout.
    pub fn of_loss(loss: Tensor<1>, model: &UNet, layout: &Layout) -> Self {
        let grads = GradientsParams::from_grads(loss.backward(), model);
        Self::from_params(&grads, model, layout)
    }

    pub fn from_params(grads: &GradientsParams, model: &UNet, layout: &Layout) -> Self {
        struct Collect<'a> {
            grads: &'a GradientsParams,
            parts: Vec<Tensor<1>>,
        }
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let n = param.val().shape().num_elements();
                let part = match self.grads.get::<D>(param.id) {
                    Some(g) => g.reshape([n]),
                    // A parameter this loss does not reach (e.g. an unused class row's
                    // neighbours are reached, a whole unused branch is not): zero.
                    None => Tensor::zeros([n], &param.val().inner().device()),
                };
                self.parts.push(part);
            }
        }
        let mut c = Collect {
            grads,
            parts: vec![],
        };
        model.visit(&mut c);
        Self {
            flat: Tensor::cat(c.parts, 0),
            layout: layout.clone(),
        }
    }

    /// A gradient given directly as values (hand-made gradients in tests; closed-form
    /// penalty gradients are built with [`GradVec::with_flat`]).
    pub fn from_values(values: Vec<f32>, device: &Device) -> Self {
        let len = values.len();
        let layout = Layout {
            slots: vec![Slot {
                id: None,
                shape: Shape::new([len]),
                offset: 0,
                len,
            }],
            len,
        };
        Self {
            flat: Tensor::from_data(TensorData::new(values, [len]), device),
            layout,
        }
    }

    /// Values laid out as `layout` says (a gradient computed elsewhere, e.g. on another
    /// device), on `device`.
    pub fn in_layout(values: Vec<f32>, layout: &Layout, device: &Device) -> Self {
        assert_eq!(values.len(), layout.len, "gradient of another model");
        let len = values.len();
        Self {
            flat: Tensor::from_data(TensorData::new(values, [len]), device),
            layout: layout.clone(),
        }
    }

    /// Same layout, other values.
    pub fn with_flat(&self, flat: Tensor<1>) -> Self {
        Self {
            flat,
            layout: self.layout.clone(),
        }
    }

    pub fn flat(&self) -> &Tensor<1> {
        &self.flat
    }

    pub fn norm(&self) -> f32 {
        self.flat.clone().square().sum().into_scalar::<f32>().sqrt()
    }

    pub fn dot(&self, other: &GradVec) -> f32 {
        (self.flat.clone() * other.flat.clone())
            .sum()
            .into_scalar::<f32>()
    }

    pub fn scaled(self, factor: f32) -> Self {
        Self {
            flat: self.flat * factor,
            layout: self.layout,
        }
    }

    /// `self + factor · other`
    pub fn plus(self, other: &GradVec, factor: f32) -> Self {
        Self {
            flat: self.flat + other.flat.clone() * factor,
            layout: self.layout,
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.flat
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 gradient")
    }

    /// Back to per-parameter gradients for the optimizer.
    pub fn into_params(self, model: &UNet) -> GradientsParams {
        struct Register<'a> {
            flat: &'a Tensor<1>,
            slots: &'a [Slot],
            next: usize,
            out: GradientsParams,
        }
        impl ModuleVisitor for Register<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let slot = &self.slots[self.next];
                self.next += 1;
                debug_assert_eq!(slot.id, Some(param.id), "layout of another model");
                let g = self
                    .flat
                    .clone()
                    .narrow(0, slot.offset, slot.len)
                    .reshape(slot.shape.clone());
                self.out.register::<D>(param.id, g);
            }
        }
        let mut r = Register {
            flat: &self.flat,
            slots: &self.layout.slots,
            next: 0,
            out: GradientsParams::new(),
        };
        model.visit(&mut r);
        r.out
    }
}

/// A gradient after the global clip, with what the clip saw.
pub struct Clipped {
    pub grad: GradVec,
    /// L2 norm of the gradient before clipping.
    pub norm: f32,
    /// Whether it was scaled down.
    pub clipped: bool,
}

/// Scales `grad` so its global L2 norm is at most `max_norm` (0 = no clip). A non-finite
/// norm is left as it is for the caller to refuse: scaling cannot repair it.
pub fn clip_to_norm(grad: GradVec, max_norm: f32) -> Clipped {
    let norm = grad.norm();
    let clipped = max_norm > 0.0 && norm.is_finite() && norm > max_norm;
    Clipped {
        grad: if clipped {
            grad.scaled(max_norm / norm)
        } else {
            grad
        },
        norm,
        clipped,
    }
}

/// All parameter values of a model as one flat vector (detached, no autodiff), in the
/// same order as [`Layout::of`].
pub fn flat_parameters(model: &UNet) -> Tensor<1> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val().detach().inner();
            let n = v.shape().num_elements();
            self.0.push(v.reshape([n]));
        }
    }
    let mut c = Collect(vec![]);
    model.visit(&mut c);
    Tensor::cat(c.0, 0)
}

/// Replaces every parameter of `model` by the values of `flat` (inverse of
/// [`flat_parameters`]); used for inner-loop copies and tests.
pub fn set_flat_parameters(model: UNet, flat: &Tensor<1>, layout: &Layout) -> UNet {
    struct Set<'a> {
        flat: &'a Tensor<1>,
        slots: &'a [Slot],
        next: usize,
    }
    impl ModuleMapper for Set<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let slot = &self.slots[self.next];
            self.next += 1;
            let values = self
                .flat
                .clone()
                .narrow(0, slot.offset, slot.len)
                .reshape(slot.shape.clone());
            param.map(|old| {
                let t = if old.is_autodiff() {
                    values.autodiff()
                } else {
                    values
                };
                if old.is_require_grad() {
                    t.require_grad()
                } else {
                    t
                }
            })
        }
    }
    model.map(&mut Set {
        flat,
        slots: &layout.slots,
        next: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_follow_vector_algebra() {
        let d = Device::flex();
        let a = GradVec::from_values(vec![3.0, 4.0], &d);
        let b = GradVec::from_values(vec![1.0, -2.0], &d);
        assert!((a.norm() - 5.0).abs() < 1e-6);
        assert!((a.dot(&b) - (3.0 - 8.0)).abs() < 1e-6);
        assert_eq!(a.clone().plus(&b, 2.0).to_vec(), vec![5.0, 0.0]);
        assert_eq!(a.clone().scaled(0.5).to_vec(), vec![1.5, 2.0]);
        let c = clip_to_norm(a.clone(), 1.0);
        assert!(c.clipped && (c.norm - 5.0).abs() < 1e-6);
        assert!((c.grad.norm() - 1.0).abs() < 1e-6);
        let kept = clip_to_norm(a.clone(), 10.0);
        assert!(!kept.clipped && kept.grad.to_vec() == vec![3.0, 4.0]);
        assert!(!clip_to_norm(a, 0.0).clipped, "0 = no clip");
    }
}
