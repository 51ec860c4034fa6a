//! The gateway's discovery, as a go-livepeer broadcaster does it (§2.3.2): GetOrchestrator on
//! every candidate at once, the answers that pass its acceptance checks kept, the wait ended
//! early once enough have answered (first wait 500 ms, doubling, 6 s at most); then a choice
//! by price and latency, skipping orchestrators blocked for failing verification.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lpe_pm::recipient::price_from_info;
use lpe_pm::sig::SigningKey;
use lpe_pm::{Address, BigRational};

use crate::client;
use crate::proto::{Capabilities, OrchestratorInfo, OrchestratorRequest};

/// go-livepeer's first wait for answers; it doubles up to [`CUT_OFF`].
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// go-livepeer's hard limit for one discovery round.
const CUT_OFF: Duration = Duration::from_secs(6);

/// An orchestrator that answered acceptably.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The URI it was asked at.
    pub uri: String,
    pub info: OrchestratorInfo,
    /// How long its GetOrchestrator took.
    pub latency: Duration,
    /// Its price per pixel.
    pub price: BigRational,
}

/// Why an answer was not taken (go-livepeer's acceptance checks, §2.3.2).
pub fn acceptable(
    info: &OrchestratorInfo,
    needs: &Capabilities,
    max_price: Option<&BigRational>,
) -> Result<BigRational, String> {
    if info.transcoder.is_empty() {
        return Err("no transcoder URI".into());
    }
    if info.transcoder.ends_with('/') {
        return Err("the transcoder URI ends with a slash".into());
    }
    if info.address.len() != 20 && !info.address.is_empty() {
        return Err("a malformed address".into());
    }
    if info.auth_token.is_none() {
        return Err("Missing auth token".into());
    }
    if info.ticket_params.is_none() {
        return Err("no ticket params".into());
    }
    let p = info.price_info.as_ref().ok_or("no price")?;
    if p.price_per_unit < 0 {
        return Err("a negative price".into());
    }
    let price =
        price_from_info(p.price_per_unit, p.pixels_per_unit).ok_or("pixels per unit is 0")?;
    let offered = info.capabilities.as_ref().ok_or("no capabilities")?;
    let mandatory = Capabilities {
        bitstring: offered.mandatories.clone(),
        ..Default::default()
    };
    if !mandatory.subset_of(needs) {
        return Err("a mandatory capability this job lacks".into());
    }
    if !needs.subset_of(offered) {
        return Err("incompatible capabilities".into());
    }
    if let Some(max) = max_price
        && price > *max
    {
        return Err(format!(
            "price {} above the maximum {}",
            lpe_pm::rational_string(&price),
            lpe_pm::rational_string(max)
        ));
    }
    Ok(price)
}

pub struct Discovery {
    /// The signed request sent to every candidate (its signature never changes: it covers
    /// only the gateway's address).
    request: OrchestratorRequest,
    needs: Capabilities,
    max_price: Option<BigRational>,
    /// Orchestrators that failed verification, until when.
    blocked: Mutex<HashMap<Address, Instant>>,
}

impl Discovery {
    pub fn new(key: SigningKey, needs: Capabilities, max_price: Option<BigRational>) -> Self {
        let request = client::orchestrator_request(&key, Some(needs.clone()));
        Self::with_request(request, needs, max_price)
    }

    /// Discovery with a request signed elsewhere (by a remote signer).
    pub fn with_request(
        request: OrchestratorRequest,
        needs: Capabilities,
        max_price: Option<BigRational>,
    ) -> Self {
        Self {
            request: OrchestratorRequest {
                capabilities: Some(needs.clone()),
                ..request
            },
            needs,
            max_price,
            blocked: Mutex::default(),
        }
    }

    pub fn max_price(&self) -> Option<&BigRational> {
        self.max_price.as_ref()
    }

    /// Asks every URI at once and keeps the acceptable answers, sorted by latency; returns
    /// once `wanted` have answered, or at a wait's end with at least one, or at the cut-off.
    pub async fn query(&self, uris: &[String], wanted: usize) -> Vec<Candidate> {
        let mut asks = tokio::task::JoinSet::new();
        for uri in uris {
            let (uri, req) = (uri.clone(), self.request.clone());
            asks.spawn(async move {
                let started = Instant::now();
                let ch = client::connect(&uri).await?;
                let info = client::get_orchestrator(ch, req)
                    .await
                    .map_err(|e| e.message().to_string())?;
                Ok::<_, String>((uri, info, started.elapsed()))
            });
        }
        let started = Instant::now();
        let mut wait = FIRST_WAIT;
        let mut found = Vec::new();
        loop {
            let deadline = (started + wait).min(started + CUT_OFF);
            let next = tokio::time::timeout_at(deadline.into(), asks.join_next()).await;
            match next {
                Ok(Some(Ok(Ok((uri, info, latency))))) => {
                    match acceptable(&info, &self.needs, self.max_price.as_ref()) {
                        Ok(price) if !self.is_blocked(&info) => found.push(Candidate {
                            uri,
                            info,
                            latency,
                            price,
                        }),
                        Ok(_) => tracing::debug!(%uri, "orchestrator blocked"),
                        Err(why) => tracing::debug!(%uri, "orchestrator not taken: {why}"),
                    }
                    if found.len() >= wanted {
                        break;
                    }
                }
                Ok(Some(Ok(Err(e)))) => tracing::debug!("orchestrator did not answer: {e}"),
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) if !found.is_empty() || started.elapsed() >= CUT_OFF => break,
                Err(_) => wait *= 2,
            }
        }
        asks.abort_all();
        found.sort_by_key(|c| c.latency);
        found
    }

    /// The cheapest candidate, the fastest of equals.
    pub fn select(candidates: &[Candidate]) -> Option<&Candidate> {
        candidates
            .iter()
            .min_by(|a, b| a.price.cmp(&b.price).then(a.latency.cmp(&b.latency)))
    }

    /// Keeps an orchestrator out of the choice for `period` (it failed verification).
    pub fn block(&self, info: &OrchestratorInfo, period: Duration) {
        if let (Ok(a), Ok(mut b)) = (
            Address::try_from(info.address.as_slice()),
            self.blocked.lock(),
        ) {
            b.insert(a, Instant::now() + period);
        }
    }

    fn is_blocked(&self, info: &OrchestratorInfo) -> bool {
        let Ok(a) = Address::try_from(info.address.as_slice()) else {
            return false;
        };
        self.blocked
            .lock()
            .map(|mut b| {
                b.retain(|_, until| *until > Instant::now());
                b.contains_key(&a)
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AuthToken, PriceInfo, TicketParams, capability};

    fn info(price: i64) -> OrchestratorInfo {
        OrchestratorInfo {
            transcoder: "https://o.example:8935".into(),
            ticket_params: Some(TicketParams::default()),
            price_info: Some(PriceInfo {
                price_per_unit: price,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            address: vec![1; 20],
            capabilities: Some(Capabilities::from_ids(capability::TRANSCODING)),
            auth_token: Some(AuthToken::default()),
            ..Default::default()
        }
    }

    fn needs() -> Capabilities {
        Capabilities::from_ids(&[capability::H264, capability::MPEGTS, capability::AUTH_TOKEN])
    }

    #[test]
    fn go_livepeers_acceptance_checks() {
        assert!(acceptable(&info(3), &needs(), None).is_ok());
        let max = BigRational::from_integer(2.into());
        assert!(acceptable(&info(3), &needs(), Some(&max)).is_err());
        assert!(acceptable(&info(2), &needs(), Some(&max)).is_ok());
        let mut i = info(1);
        i.transcoder.push('/');
        assert!(acceptable(&i, &needs(), None).is_err());
        let mut i = info(1);
        i.auth_token = None;
        assert_eq!(
            acceptable(&i, &needs(), None).err().as_deref(),
            Some("Missing auth token")
        );
        let mut i = info(1);
        if let Some(p) = i.price_info.as_mut() {
            p.pixels_per_unit = 0;
        }
        assert!(acceptable(&i, &needs(), None).is_err());
        let mp4 = Capabilities::from_ids(&[capability::H264, capability::MP4]);
        assert_eq!(
            acceptable(&info(1), &mp4, None).err().as_deref(),
            Some("incompatible capabilities")
        );
    }

    #[test]
    fn the_cheapest_then_the_fastest_is_chosen() {
        let c = |price: i64, ms: u64| Candidate {
            uri: format!("{price}-{ms}"),
            info: info(price),
            latency: Duration::from_millis(ms),
            price: BigRational::from_integer(price.into()),
        };
        let all = [c(3, 10), c(2, 50), c(2, 20), c(5, 1)];
        assert_eq!(
            Discovery::select(&all).map(|c| c.uri.as_str()),
            Some("2-20")
        );
        assert!(Discovery::select(&[]).is_none());
    }
}
