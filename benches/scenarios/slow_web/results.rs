//! A finished job's results read back from the service: domain to category and favicon URL.

use super::*;

/// Every result of job `id`: domain → (category, favicon URL), the category being `success`
/// or the error code.
pub(super) async fn categories(
    ctx: &Ctx,
    d: &Deployment,
    id: &str,
) -> Result<std::collections::HashMap<String, (String, String)>> {
    let mut out = std::collections::HashMap::new();
    for r in all_results(ctx, d, id).await? {
        let status = r["status"].as_str().unwrap_or("?");
        let category = if status == "success" {
            status
        } else {
            r["error_code"].as_str().unwrap_or(status)
        };
        out.insert(
            r["domain"].as_str().unwrap_or_default().to_owned(),
            (
                category.to_owned(),
                r["favicon_url"].as_str().unwrap_or_default().to_owned(),
            ),
        );
    }
    Ok(out)
}
