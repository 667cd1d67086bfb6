//! Whether a run's training passes fit in the memory the machine has left — asked before the
//! first step on the CPU, where a batch too large for memory is not an error the run could
//! report: the OS kills the process. (GPU backends fail with an allocation error the engine
//! turns into a message naming the batch; see `engine::panic_error`.)
//!
//! Measured, not guessed: the forward graph of a training pass (the activations autodiff keeps
//! for the backward pass) at 1 image and at 2 images, counted by the instrumented allocator.
//! The graph grows linearly with the images in a pass, so the two points give a micro-batch's;
//! on top come copies of the weights' size — a backward pass's gradients, gradients kept
//! between passes, the optimizer's moments. The sum is an upper bound (the backward pass frees
//! the graph as it builds the gradients). Measuring a whole pass instead would not do: at a
//! few images its peak is the gradients', the same at 1 and 2 images.

use crate::train::memory::gib;

pub use crate::train::memory::PassMemory;

/// The question: a step of `batch` images in `accumulation` micro-batches, plus `held` bytes
/// of weight-sized copies (gradients, the optimizer's moments), on a machine with `available`
/// bytes left.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub batch: usize,
    pub accumulation: usize,
    pub held: u64,
    pub available: u64,
}

impl Request {
    pub fn micro_batch(&self) -> usize {
        self.batch.div_ceil(self.accumulation.max(1))
    }

    /// Bytes the step needs with micro-batches of `micro` images.
    fn need(&self, pass: &PassMemory, micro: usize) -> u64 {
        pass.at(micro) + self.held
    }
}

/// `Ok(note)` when the step fits (the note says what it needs), else the error a user reads:
/// the batch, what was measured, and the `train.grad_accumulation` that fits.
pub fn verdict(pass: &PassMemory, request: &Request) -> Result<String, String> {
    let micro = request.micro_batch();
    let need = request.need(pass, micro);
    let measured = format!(
        "a training pass's forward graph measured {} at 1 image and {} at 2 images",
        gib(pass.one),
        gib(pass.two)
    );
    if need <= request.available {
        return Ok(format!(
            "memory: a training pass of {micro} images needs about {} ({measured}), {} available",
            gib(need),
            gib(request.available)
        ));
    }
    let fitting = pass
        .most_images(request.held, request.available)
        .map(|most| most.min(micro));
    let advice = match fitting {
        Some(m) => {
            let accumulation = request.batch.div_ceil(m);
            let m = request.batch.div_ceil(accumulation);
            format!(
                "set train.grad_accumulation = {accumulation} (micro-batches of {m} images, about {}): the same batch and result in less memory",
                gib(request.need(pass, m))
            )
        }
        None => "even a pass of 1 image does not fit: use a GPU or a machine with more memory"
            .to_string(),
    };
    Err(format!(
        "train.batch_size = {} in {} needs about {} of memory ({measured}, plus {} of gradients and optimizer moments), but {} is available; {advice}",
        request.batch,
        passes_phrase(request.batch, micro),
        gib(need),
        gib(request.held),
        gib(request.available)
    ))
}

/// `"one pass of 64 images"` / `"4 micro-batches of 16 images"`.
pub fn passes_phrase(batch: usize, micro: usize) -> String {
    if micro >= batch {
        format!("one pass of {batch} images")
    } else {
        format!("{} micro-batches of {micro} images", batch.div_ceil(micro))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn pass() -> PassMemory {
        // 1 GiB fixed + 0.5 GiB per image.
        PassMemory {
            one: GIB + GIB / 2,
            two: 2 * GIB,
        }
    }

    #[test]
    fn a_pass_grows_linearly_with_its_images() {
        assert_eq!(pass().per_image(), GIB / 2);
        assert_eq!(pass().at(64), GIB + 32 * GIB);
    }

    #[test]
    fn a_step_that_fits_says_what_it_needs() {
        let request = Request {
            batch: 64,
            accumulation: 4,
            held: GIB,
            available: 20 * GIB,
        };
        let note = verdict(&pass(), &request).unwrap();
        assert!(
            note.contains("pass of 16 images needs about 10.00 GiB"),
            "{note}"
        );
    }

    #[test]
    fn a_step_that_does_not_fit_names_the_batch_and_the_accumulation_that_does() {
        let request = Request {
            batch: 64,
            accumulation: 1,
            held: GIB,
            available: 20 * GIB,
        };
        let error = verdict(&pass(), &request).unwrap_err();
        assert!(
            error.contains("train.batch_size = 64 in one pass of 64 images"),
            "{error}"
        );
        assert!(error.contains("needs about 34.00 GiB"), "{error}");
        // 1 + 1 + 0.5·m ≤ 20 → m ≤ 36; 64 in 2 micro-batches of 32 (18 GiB).
        assert!(
            error.contains(
                "set train.grad_accumulation = 2 (micro-batches of 32 images, about 18.00 GiB)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_model_too_large_for_one_image_says_so() {
        let request = Request {
            batch: 8,
            accumulation: 8,
            held: GIB,
            available: GIB,
        };
        let error = verdict(&pass(), &request).unwrap_err();
        assert!(error.contains("8 micro-batches of 1 images"), "{error}");
        assert!(
            error.contains("even a pass of 1 image does not fit"),
            "{error}"
        );
    }
}
