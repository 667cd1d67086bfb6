//! Exponential moving average of the weights.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::diffusion::unet::UNet;

/// Pretraining's EMA decay at step `n`, with the usual warm-up:
/// `min(decay, (1 + n) / (10 + n))`. Unlearning runs use the configured decay as it is.
pub fn warmed_up_decay(decay: f64, step: usize) -> f32 {
    decay.min((1.0 + step as f64) / (10.0 + step as f64)) as f32
}

/// `ema ← decay·ema + (1 − decay)·model` for every parameter, computed on the device (no
/// host round trip per step). `ema` lives on the inner (non-autodiff) device.
pub fn update_ema(ema: UNet, model: &UNet, decay: f32) -> UNet {
    struct Current {
        path: Vec<String>,
        out: HashMap<String, Tensor<1>>,
    }
    impl ModuleVisitor for Current {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val().detach().inner();
            let n = value.shape().num_elements();
            self.out.insert(self.path.join("."), value.reshape([n]));
        }
    }
    struct Blend {
        path: Vec<String>,
        current: HashMap<String, Tensor<1>>,
        decay: f32,
    }
    impl ModuleMapper for Blend {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(current) = self.current.remove(&self.path.join(".")) else {
                return param;
            };
            let d = self.decay;
            param.map(|avg| {
                let shape = avg.shape();
                avg * d + current.reshape(shape) * (1.0 - d)
            })
        }
    }
    let mut current = Current {
        path: vec![],
        out: HashMap::new(),
    };
    model.visit(&mut current);
    ema.map(&mut Blend {
        path: vec![],
        current: current.out,
        decay,
    })
}
