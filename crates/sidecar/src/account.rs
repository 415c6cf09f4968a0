//! The database account response (`GET /`): its regional endpoints, rewritten to the sidecar's
//! own listeners.
//!
//! Why: every SDK reads the account first and then talks to the endpoints its
//! `writableLocations` and `readableLocations` name (`databaseAccountEndpoint`), matching
//! regions by `name` against its preferred locations. A proxy that left them alone would see
//! the first request only. Turning endpoint discovery off instead (.NET `LimitToEndpoint`, Java
//! `endpointDiscoveryEnabled(false)`, Python and JavaScript `enable_endpoint_discovery`) would
//! cost the application its multi-region routing. So the sidecar gives each upstream endpoint a
//! listener of its own (the configured account endpoint: the application-facing one; every other
//! region: one on a port the system picks) and rewrites the URLs, keeping the names. The write
//! region's upstream endpoint is remembered: a read that a lagging region could not serve with
//! the broker's token is repeated there.

use serde_json::Value;

/// The lists of regional endpoints in a database account.
const LOCATION_LISTS: [&str; 2] = ["writableLocations", "readableLocations"];
/// The endpoint field of each location.
const ENDPOINT: &str = "databaseAccountEndpoint";

/// `scheme://host:port/`, lowercased, with the scheme's default port made explicit: the form in
/// which endpoints are compared.
pub fn normalize(endpoint: &str) -> Option<String> {
    let uri: http::Uri = endpoint.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(port), _) => port,
        (None, "https") => 443,
        (None, "http") => 80,
        _ => return None,
    };
    Some(format!("{scheme}://{host}:{port}/"))
}

/// Every distinct endpoint the account names, normalized, write regions first.
pub fn endpoints(account: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for list in LOCATION_LISTS {
        for location in account
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(endpoint) = location
                .get(ENDPOINT)
                .and_then(Value::as_str)
                .and_then(normalize)
                && !found.contains(&endpoint)
            {
                found.push(endpoint);
            }
        }
    }
    found
}

/// The first write region's endpoint, normalized.
pub fn write_endpoint(account: &Value) -> Option<String> {
    account
        .get("writableLocations")?
        .as_array()?
        .first()?
        .get(ENDPOINT)?
        .as_str()
        .and_then(normalize)
}

/// Replaces each endpoint that `local` maps (from the normalized upstream endpoint to the
/// sidecar's URL for it) and returns how many it replaced. Endpoints it does not map are left
/// as they are (the application then talks to that region directly).
pub fn rewrite(account: &mut Value, local: impl Fn(&str) -> Option<String>) -> usize {
    let mut replaced = 0;
    for list in LOCATION_LISTS {
        let Some(locations) = account.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for location in locations {
            let Some(field) = location.get_mut(ENDPOINT) else {
                continue;
            };
            let Some(upstream) = field.as_str().and_then(normalize) else {
                continue;
            };
            if let Some(url) = local(&upstream) {
                *field = Value::String(url);
                replaced += 1;
            }
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Value {
        serde_json::json!({
            "id": "acct",
            "writableLocations": [
                {"name": "East US", "databaseAccountEndpoint": "https://acct-eastus.documents.azure.com:443/"}
            ],
            "readableLocations": [
                {"name": "East US", "databaseAccountEndpoint": "https://acct-eastus.documents.azure.com:443/"},
                {"name": "West US", "databaseAccountEndpoint": "https://ACCT-westus.documents.azure.com/"}
            ],
            "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"}
        })
    }

    #[test]
    fn endpoints_are_compared_in_one_form() {
        assert_eq!(
            normalize("https://Acct.documents.azure.com").as_deref(),
            Some("https://acct.documents.azure.com:443/")
        );
        assert_eq!(
            normalize("http://127.0.0.1:8081/").as_deref(),
            Some("http://127.0.0.1:8081/")
        );
        assert_eq!(normalize("not a url"), None);
    }

    #[test]
    fn finds_each_region_once_write_region_first() {
        let account = account();
        assert_eq!(
            endpoints(&account),
            vec![
                "https://acct-eastus.documents.azure.com:443/".to_owned(),
                "https://acct-westus.documents.azure.com:443/".to_owned()
            ]
        );
        assert_eq!(
            write_endpoint(&account).as_deref(),
            Some("https://acct-eastus.documents.azure.com:443/")
        );
    }

    #[test]
    fn rewrites_the_mapped_endpoints_and_keeps_the_names() {
        let mut account = account();
        let replaced = rewrite(&mut account, |upstream| {
            upstream
                .contains("eastus")
                .then(|| "http://127.0.0.1:8081/".to_owned())
        });
        assert_eq!(replaced, 2);
        assert_eq!(
            account["readableLocations"][0]["databaseAccountEndpoint"],
            "http://127.0.0.1:8081/"
        );
        assert_eq!(account["readableLocations"][0]["name"], "East US");
        assert_eq!(
            account["readableLocations"][1]["databaseAccountEndpoint"],
            "https://ACCT-westus.documents.azure.com/",
            "not mapped: untouched"
        );
        assert_eq!(
            account["userConsistencyPolicy"]["defaultConsistencyLevel"],
            "Session"
        );
    }
}
