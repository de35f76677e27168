//! `capwatch report FILE.jsonl [--html OUT.html]`: the summary of a past session, and with
//! `--html` the same session as one self-contained page with charts. Lines that do not parse
//! (a file cut by a full disk, say) are skipped and counted.

use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::dash::records_file::RecordsFile;
use crate::dash::report_html::{self, Thresholds};
use crate::dash::summary::SessionSummary;

pub fn run(file: &Path, html: Option<&Path>, config: &Path) -> Result<ExitCode, CliError> {
    let (records, skipped) =
        RecordsFile::read(file).map_err(|err| CliError::Failed(format!("cannot read {}: {err}", file.display())))?;
    let summary = SessionSummary::from_records(&records)
        .ok_or_else(|| CliError::Failed(format!("{} has no test-cycle records to summarise", file.display())))?;
    print!("{}", summary.markdown());
    if let Some(out) = html {
        let thresholds = Thresholds::of(&super::load_config(config)?);
        let page = report_html::page(&records, &thresholds)
            .map_err(|err| CliError::Failed(err.to_string()))?
            .ok_or_else(|| CliError::Failed(format!("{} has no test-cycle records to chart", file.display())))?;
        std::fs::write(out, page).map_err(|err| CliError::Failed(format!("cannot write {}: {err}", out.display())))?;
        println!("\nReport written to {}", out.display());
    }
    if skipped > 0 {
        println!("\n({skipped} unreadable lines skipped)");
    }
    Ok(ExitCode::SUCCESS)
}
