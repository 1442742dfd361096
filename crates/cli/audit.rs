//! `segflow audit verify | show | index`: the auditor's commands, over an output directory
//! rather than a pipeline (an auditor may not have the pipeline's variables or data).

use segflow_engine::exit;

use crate::Exit;
use crate::args::AuditCommand;

pub(crate) fn audit(command: AuditCommand) -> Exit {
    match command {
        AuditCommand::Verify { out_dir, period } => {
            let label = period.map(|p| p.to_string());
            match segflow_audit::verify(&out_dir, label.as_deref()) {
                Ok(v) => {
                    for note in &v.notes {
                        println!("note: {note}");
                    }
                    for problem in &v.problems {
                        println!("MISMATCH: {problem}");
                    }
                    println!("{}", v.summary());
                    Exit(if v.passed() {
                        exit::OK
                    } else {
                        exit::CHECKS_FAILED
                    })
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit(exit::RUNTIME)
                }
            }
        }
        AuditCommand::Show {
            out_dir,
            period,
            pipeline,
        } => match segflow_audit::show(&out_dir, &period.to_string(), pipeline.as_deref()) {
            Ok(text) => {
                print!("{text}");
                Exit(exit::OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit(exit::RUNTIME)
            }
        },
        AuditCommand::Index { out_dir } => match segflow_engine::index_manifests(&out_dir) {
            Ok(written) => {
                for (path, why) in &written.unreadable {
                    eprintln!("warning: {} left out: {why}", path.display());
                }
                println!(
                    "{} run(s) indexed into {} table(s) under {}",
                    written.runs,
                    written.files.len(),
                    out_dir.join("runs").display()
                );
                Exit(exit::OK)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit(e.exit_code())
            }
        },
    }
}
