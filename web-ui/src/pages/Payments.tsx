import { ApiError, eth, get, lpt } from "../api";
import { ErrorBox, StateBadge, usePoll } from "../ui";
import type {
  OrchestratorView as OrchestratorStatus,
  SpendResponse,
  TicketsResponse as Tickets,
  WalletView as Wallet,
} from "../api.gen";


/// Payments off (409) or the chain not reached yet (503): the page says "not configured".
function unavailable(e: unknown) {
  return e instanceof ApiError && (e.code === "payments_off" || e.status === 503);
}

export function Payments() {
  const wallet = usePoll(() => get<Wallet>("/api/pm/wallet"), 15000);
  const tickets = usePoll(() => get<Tickets>("/api/pm/tickets?limit=100"), 5000);
  const spend = usePoll(() => get<SpendResponse>("/api/network/spend"), 5000);
  const onChain = usePoll(() => get<OrchestratorStatus>("/api/network/orchestrator"), 60000);
  if (unavailable(wallet.error) && !wallet.value) {
    return (
      <section>
        <h1>Payments</h1>
        <p class="card" data-testid="payments-off">
          Not configured: this node runs off-chain. Set <code>pm.role</code>, <code>pm.eth_url</code> and a wallet to pay or earn with Livepeer tickets.
          {wallet.error instanceof ApiError ? <small class="muted"> ({wallet.error.message})</small> : null}
        </p>
        <Queue tickets={tickets.value} />
      </section>
    );
  }
  const w = wallet.value;
  // Earnings over time: redeemed amounts summed per day, exactly (BigInt wei).
  const perDay = new Map<string, bigint>();
  for (const t of tickets.value?.tickets ?? []) {
    if (t.state !== "redeemed" || !t.amount) continue;
    const day = new Date(t.created_ms).toISOString().slice(0, 10);
    perDay.set(day, (perDay.get(day) ?? 0n) + BigInt(t.amount));
  }
  return (
    <section>
      <h1>Payments</h1>
      <ErrorBox error={wallet.error && !unavailable(wallet.error) ? wallet.error : null} />
      {w && (
        <dl class="facts">
          <dt>Role</dt>
          <dd>{w.role}</dd>
          <dt>Wallet</dt>
          <dd>
            <code>{w.address}</code>
          </dd>
          <dt>Balance</dt>
          <dd>{eth(w.balance)}</dd>
          <dt>Deposit</dt>
          <dd>{eth(w.deposit)}</dd>
          <dt>Reserve</dt>
          <dd>{eth(w.reserve)}</dd>
          <dt>Withdraw round</dt>
          <dd>{w.withdraw_round === "0" ? "locked (not unlocking)" : w.withdraw_round}</dd>
        </dl>
      )}
      {w && (w.role === "orchestrator" || w.role === "both") && onChain.value && (
        <OnChain o={onChain.value} />
      )}
      {perDay.size > 0 && (
        <>
          <h2>Earnings</h2>
          <table class="table">
            <tbody>
              {[...perDay.entries()].map(([d, v]) => (
                <tr>
                  <td>{d}</td>
                  <td>{eth(v.toString())}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <Spend spend={spend.value} />
      <Queue tickets={tickets.value} />
    </section>
  );
}

/// The account as an orchestrator on chain: what gateways discovering on chain will call.
function OnChain({ o }: { o: OrchestratorStatus }) {
  return (
    <>
      <h2>On chain</h2>
      <dl class="facts" data-testid="on-chain">
        <dt>Service URI published</dt>
        <dd>
          {o.published_service_uri ? <code>{o.published_service_uri}</code> : "none"}
          {o.published_matches ? "" : <span class="warning"> — this node serves {o.service_uri}: run `livepeer-edge orchestrator register`</span>}
        </dd>
        <dt>Price quoted</dt>
        <dd>
          {o.price_per_unit} wei per {o.pixels_per_unit} pixel{o.pixels_per_unit === 1 ? "" : "s"}
        </dd>
        <dt>Transcoder pool</dt>
        <dd>{o.in_pool ? `in the pool (${o.pool_size} members)` : "not in the pool"}</dd>
        <dt>Active this round</dt>
        <dd>{o.active ? "yes" : "no"}</dd>
        {o.reward && <Reward r={o.reward} />}
      </dl>
    </>
  );
}

const REWARD_STATES: Record<string, string> = {
  starting: "not checked yet",
  waiting: "waiting for the round to be initialized",
  not_active: "not an active transcoder this round",
  skipped: "due, not sent",
  failed: "failed, retrying this round",
  done: "called for this round",
};

/// The once-a-round reward call: where it stands and what the last one minted.
function Reward({ r }: { r: NonNullable<OrchestratorStatus["reward"]> }) {
  return (
    <>
      <dt>Reward, round {r.current_round ?? "—"}</dt>
      <dd data-testid="reward-state">
        {REWARD_STATES[r.state] ?? r.state}
        {r.detail && <span class={r.state === "failed" ? "warning" : "muted"}> — {r.detail}</span>}
        {r.estimated_reward && r.state !== "done" && (
          <small class="muted">
            {" "}
            (would mint {lpt(r.estimated_reward)} for up to {eth(r.estimated_fee)})
          </small>
        )}
      </dd>
      {r.last_tx && (
        <>
          <dt>Last reward</dt>
          <dd>
            round {r.last_round}: {lpt(r.last_minted)} minted for {eth(r.last_fee)} in <code>{r.last_tx}</code>
          </dd>
        </>
      )}
    </>
  );
}

/// What the gateway spent on each orchestrator it sent segments to.
function Spend({ spend }: { spend: SpendResponse | null }) {
  if (!spend || spend.orchestrators.length === 0) return null;
  // EV is an exact fraction "n/d" of wei: shown in ETH, rounded down to the wei.
  const wei = (r: string) => {
    const [n, d] = r.split("/");
    return (BigInt(n) / BigInt(d ?? "1")).toString();
  };
  return (
    <>
      <h2>Spent on orchestrators</h2>
      <table class="table" data-testid="spend">
        <thead>
          <tr>
            <th>Orchestrator</th>
            <th>Segments</th>
            <th>Tickets</th>
            <th>Expected value</th>
            <th>Pixels</th>
            <th>Price (wei/pixel)</th>
            <th>Failures</th>
          </tr>
        </thead>
        <tbody>
          {spend.orchestrators.map((o) => (
            <tr>
              <td>
                <code>{o.orchestrator}</code>
              </td>
              <td>{o.segments}</td>
              <td>{o.tickets}</td>
              <td>{eth(wei(o.ev_spent_wei || "0"))}</td>
              <td>{o.pixels}</td>
              <td>{o.price_wei_per_pixel}</td>
              <td title={o.last_error ?? ""}>{o.failures}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Queue({ tickets }: { tickets: Tickets | null }) {
  if (!tickets) return null;
  const c = tickets.counts;
  return (
    <>
      <p class="summary">
        <span>received {c.received}</span>
        <span>won {c.won}</span>
        <span>redeemed {c.redeemed}</span>
        <span>failed {c.failed}</span>
        <span>expired {c.expired}</span>
        <span>pending {c.pending}</span>
        <span data-testid="earned">earned {eth(c.earned)}</span>
      </p>
      {tickets.tickets.length > 0 && (
        <table class="table">
          <thead>
            <tr>
              <th>Ticket</th>
              <th>Face value</th>
              <th>Paid</th>
              <th>State</th>
              <th>Detail</th>
            </tr>
          </thead>
          <tbody>
            {tickets.tickets.map((t) => (
              <tr>
                <td>
                  <code>{t.ticket_hash.slice(0, 12)}…</code>
                </td>
                <td>{eth(t.face_value)}</td>
                <td>{t.amount ? eth(t.amount) : "—"}</td>
                <td>
                  <StateBadge state={t.state} />
                </td>
                <td>{t.tx_hash ? <code>{t.tx_hash.slice(0, 14)}…</code> : t.reason ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
