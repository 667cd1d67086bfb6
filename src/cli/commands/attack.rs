//! `lethe attack`: the DiMRA relearning attack on an unlearned checkpoint.

use lethe::attack::dimra::{AttackConfig, in_attack_keys, is_attack_key};

use super::unlearn::{UnlearnArgs, naming_the_file, resume_experiment, run_experiment};

pub fn run(args: &UnlearnArgs) -> Result<(), String> {
    let evaluations = match (&args.resume, &args.config) {
        (Some(run_dir), _) => resume_experiment(run_dir, args)?,
        (None, Some(path)) => {
            let attack = AttackConfig::from_file(path)?;
            run_experiment(attack.to_experiment(), args)
                .map_err(|e| naming_the_file(path, in_attack_keys(e), is_attack_key))?
        }
        (None, None) => return Err("--config or --resume is required".into()),
    };
    println!();
    println!(
        "DiMRA relearning along the attack (fine-tuning on data without the forgotten content):"
    );
    println!(
        "{:>6}  {:>15}  {:>16}  {:>14}",
        "step", "forgotten class", "forget copies", "confident kept"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for (step, e) in &evaluations {
        println!(
            "{step:>6}  {:>15}  {:>16}  {:>14}",
            pct(e.forgotten_class_rate),
            pct(Some(e.forget_copy_rate)),
            pct(e.confident_kept_rate)
        );
    }
    if let Some((_, e)) = evaluations.last() {
        println!("evaluated as {}", e.provenance);
    }
    Ok(())
}
