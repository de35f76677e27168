//! `capwatch report FILE.jsonl`: the summary of a past session. Lines that do not parse (a
//! file cut by a full disk, say) are skipped and counted.

use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::dash::records_file::RecordsFile;
use crate::dash::summary::SessionSummary;

pub fn run(file: &Path) -> Result<ExitCode, CliError> {
    let (records, skipped) =
        RecordsFile::read(file).map_err(|err| CliError::Failed(format!("cannot read {}: {err}", file.display())))?;
    let summary = SessionSummary::from_records(&records)
        .ok_or_else(|| CliError::Failed(format!("{} has no test-cycle records to summarise", file.display())))?;
    print!("{}", summary.markdown());
    if skipped > 0 {
        println!("\n({skipped} unreadable lines skipped)");
    }
    Ok(ExitCode::SUCCESS)
}
