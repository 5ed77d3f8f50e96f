//! One simulated session: both machines, the messages between them, the provider's
//! sandbox, the renter's agent, crashes and restarts, and the checks at its end.

use std::collections::HashMap;
use std::time::Duration;

use orien_ledger::receipts::Tolerance;
use orien_ledger::{Countersigner, Issuer, Meter, MeterConfig, SessionRecord, SessionStatus};
use orien_protocol::{
    Artefact, ArtefactKept, Clock, CloseReason, ContentHash, Exec, ExecEvent, ExecEvents, ExecExit,
    ExecId, Millis, PaymentLane, Pricing, RpcErrorCode, SessionId, SessionResponse, Signed,
    Timestamp, ToolName, Usage, UsageReceipt, Usdc,
};

mod nodes;
mod promises;

use super::network::Schedule;
use super::{Side, World};
use crate::session::call_terms::CallTerms;
use crate::session::error;
use crate::session::provider_machine::{Delivery, ProviderInput, ProviderMachine, ProviderTerms};
use crate::session::renter_machine::{RenterInput, RenterMachine, RenterTerms};

/// The session's terms: what the provider offers and agreed to.
const RECEIPT_INTERVAL: Millis = Millis(1_000);
const ACK_TIMEOUT: Millis = Millis(3_000);
const MAX_EXEC: Millis = Millis(2_000);
const MAX_CALLS: u32 = 2;
const MAX_DURATION: Duration = Duration::from_secs(30);
const PRICING: Pricing = Pricing {
    session_per_minute: Usdc::from_micros(60_000),
    exec_per_minute: Usdc::from_micros(600_000),
    artefact_per_gib: Usdc::from_micros(400_000),
};
/// The session's workspace, which its artefacts share: they cost at most 25,000 µUSDC.
const WORKSPACE: u64 = 64 << 20;
/// The output path of the calls that name one.
const OUTPUT_PATH: &str = "out/result";
/// How long a request waits for its answer before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The renter's node: at least two receipt intervals of silence before giving up.
const GRACE: Duration = Duration::from_secs(5);
/// Attempts at delivering an output batch, a close notice and a restart notice.
const ATTEMPTS: u32 = 5;
/// Events one session may take before it counts as stuck.
const MAX_EVENTS: usize = 200_000;

/// A reply token: which request an answer belongs to.
type Token = u64;

/// A request on the wire.
#[derive(Debug, Clone)]
enum Msg {
    Receipt(Signed<UsageReceipt>),
    Events(ExecEvents),
    Close(CloseReason),
    Exec(Exec),
}

/// What the asker makes of the answer to a request.
#[derive(Debug, Clone)]
enum Route {
    /// The provider's receipt.
    Receipt,
    /// The provider's output batch (retried while the renter is busy or unreachable).
    Events { batch: ExecEvents, attempt: u32 },
    /// A node telling the other that it ended the session (retried until answered).
    Notice { reason: CloseReason, attempt: u32 },
    /// The renter's call.
    Exec { exec: ExecId },
    /// The renter's close request.
    Close,
    /// A duplicate's answer: nobody waits for it.
    Nobody,
}

#[derive(Debug)]
enum Event {
    /// A request arrives at `to`.
    Arrive { to: Side, msg: Msg, token: Token },
    /// The answer to request `token` reaches its asker (`None`: it failed).
    Answer {
        token: Token,
        response: Option<SessionResponse>,
    },
    /// A timer of `side`'s machine, if still the one it asked for.
    Tick { side: Side, at: Duration },
    /// A call ends in the provider's sandbox.
    Exit { exec: ExecId },
    /// The renter's agent decides what to do next.
    Agent,
    /// `side` crashes and restarts on its ledger.
    Crash { side: Side },
}

/// What one side did, for the bounds.
#[derive(Debug, Default, Clone, Copy)]
struct Account {
    /// The side's own meter at its end (or crash).
    usage: Option<Usage>,
    /// The artefacts its meter charged for then.
    artefacts: Usdc,
    worked: Usdc,
    ended: Option<CloseReason>,
}

struct Sim<'w> {
    world: &'w mut World,
    session: SessionId,
    provider: Option<ProviderMachine<Token>>,
    renter: Option<RenterMachine<Token>>,
    queue: Schedule<Event>,
    routes: HashMap<Token, (Side, Route)>,
    next_token: Token,
    /// The latest timer each machine asked for.
    ticks: HashMap<Side, Duration>,
    /// Calls in the provider's sandbox and how each ends.
    sandbox: HashMap<ExecId, ExecExit>,
    /// The output paths each call in the sandbox named.
    outputs: HashMap<ExecId, Vec<String>>,
    /// Bytes of artefacts the provider keeps for the session (within [`WORKSPACE`]).
    kept: u64,
    sandbox_closed: bool,
    closing: bool,
    /// How long after the session's start the renter asked to close it.
    close_asked: Option<Duration>,
    /// When the session started (monotonic).
    started: Duration,
    calls_started: u32,
    /// When the last committed receipt was first sent and when its ack came (provider;
    /// wall time of the shared clock). From its first send, not its reading: a receipt
    /// that waited behind others would otherwise widen the bound by its wait.
    last_ack: (Timestamp, Timestamp),
    /// When each receipt (by number) was first sent.
    first_sent: HashMap<u64, Timestamp>,
    /// Longest one-way delay of this session's links.
    max_delay: Duration,
    accounts: HashMap<Side, Account>,
    crashed: bool,
    lossy: bool,
}

/// Runs one session to its end and checks it; `Err` says what broke.
pub(super) fn run(world: &mut World) -> Result<(), String> {
    let session = SessionId::from_bytes(world.rng.id());
    let clock = world.clock.clone();
    // From a few calls' worth (budget exhaustion) to more than the session can use.
    let budget = Usdc::from_micros(70_000 + world.rng.below(400_000));
    let meter_config = MeterConfig {
        pricing: PRICING,
        budget,
        receipt_interval: RECEIPT_INTERVAL,
        call_cap: MeterConfig::call_cap_for(MAX_EXEC),
        artefact_cap: PRICING.artefact_amount(WORKSPACE),
    };
    let record = SessionRecord {
        session,
        provider: world.provider.node_id(),
        renter: world.renter.node_id(),
        payment: PaymentLane::Ledger,
        pricing: PRICING,
        budget,
        opened_at: clock.wall(),
    };
    for side in [Side::Provider, Side::Renter] {
        world
            .store(side)
            .open_session(record.clone())
            .map_err(|e| format!("cannot record the session: {e}"))?;
    }
    let provider = ProviderMachine::new(
        ProviderTerms {
            session,
            tool: tool(),
            max_calls: MAX_CALLS,
            max_duration: MAX_DURATION,
        },
        Meter::start(meter_config, clock.clone()),
        Issuer::new(
            world.provider.clone(),
            session,
            world.renter.node_id(),
            ACK_TIMEOUT,
            clock.clone(),
        ),
        None,
        clock.clone(),
    );
    let renter = RenterMachine::new(
        RenterTerms {
            session,
            provider: world.provider.node_id(),
            max_calls: MAX_CALLS,
            grace: GRACE,
            slack: Tolerance::default().slack,
        },
        Meter::start(meter_config, clock.clone()),
        Countersigner::new(
            world.renter.clone(),
            session,
            world.provider.node_id(),
            PRICING,
            budget,
            Tolerance::default(),
        ),
        clock.clone(),
    );
    let now = clock.monotonic();
    let max_delay = world.faults.max_delay;
    let mut sim = Sim {
        world,
        session,
        provider: Some(provider),
        renter: Some(renter),
        queue: Schedule::default(),
        routes: HashMap::new(),
        next_token: 0,
        ticks: HashMap::new(),
        sandbox: HashMap::new(),
        outputs: HashMap::new(),
        kept: 0,
        sandbox_closed: false,
        closing: false,
        close_asked: None,
        started: now,
        calls_started: 0,
        last_ack: (clock.wall(), clock.wall()),
        first_sent: HashMap::new(),
        max_delay,
        accounts: HashMap::new(),
        crashed: false,
        lossy: false,
    };
    sim.queue.at(now, Event::Agent);
    if sim.world.rng.chance(sim.world.faults.slow) {
        sim.max_delay = super::network::SLOW_DELAY;
        sim.world.report.slow += 1;
    }
    if sim.world.rng.chance(sim.world.faults.crash) {
        let side = if sim.world.rng.chance(50) {
            Side::Provider
        } else {
            Side::Renter
        };
        let at = now + sim.world.rng.upto(Duration::from_secs(12));
        sim.queue.at(at, Event::Crash { side });
    }
    sim.schedule_ticks();
    sim.drive()?;
    sim.check()
}

/// What every simulated call prints.
const OUTPUT: &[u8] = b"done\n";

/// The terms of every simulated call: the session's tool at the session's price.
fn call_terms() -> CallTerms {
    CallTerms {
        tool: tool(),
        rate: orien_ledger::meter::CallRate {
            exec_per_minute: PRICING.exec_per_minute,
            cap: MeterConfig::call_cap_for(MAX_EXEC),
        },
        output_cap: 1 << 20,
    }
}

/// The tool of every simulated session.
fn tool() -> ToolName {
    // A valid name.
    #[allow(clippy::expect_used)]
    ToolName::new("sim").expect("a valid tool name")
}

/// SHA-256 of each stream as a batch carries it (the simulation and the machine tests
/// send a call's whole output in the batch with its exit).
pub(in crate::session) fn received(batch: &ExecEvents) -> [ContentHash; 2] {
    let mut streams = [Vec::new(), Vec::new()];
    for event in &batch.events {
        if let ExecEvent::Output(chunk) = event {
            streams[chunk.stream as usize].extend_from_slice(&chunk.data);
        }
    }
    streams.map(|bytes| ContentHash::of(&bytes))
}

impl Sim<'_> {
    /// What the sandbox keeps of a call's outputs: a file of up to 24 MiB each, while
    /// the session's artefacts fit its workspace.
    fn keep_artefacts(&mut self, exec: ExecId) -> Vec<Artefact> {
        let paths = self.outputs.remove(&exec).unwrap_or_default();
        // One draw per call, outputs or not, so a run's other draws do not depend on them.
        let size = self.world.rng.below(24 << 20);
        paths
            .into_iter()
            .map(|path| {
                let kept = if self.kept + size <= WORKSPACE {
                    self.kept += size;
                    ArtefactKept::File {
                        size,
                        sha256: ContentHash::of(&size.to_be_bytes()),
                    }
                } else {
                    ArtefactKept::NoRoom
                };
                Artefact { path, kept }
            })
            .collect()
    }

    fn now(&self) -> Duration {
        self.world.clock.monotonic()
    }

    fn drive(&mut self) -> Result<(), String> {
        let mut events = 0usize;
        while let Some((at, event)) = self.queue.pop() {
            events += 1;
            if events > MAX_EVENTS {
                return Err(format!(
                    "the session did not end within {MAX_EVENTS} events"
                ));
            }
            let now = self.now();
            if at > now {
                self.world.clock.advance(at - now);
            }
            self.on(event)?;
            self.schedule_ticks();
        }
        if self.provider.is_some() || self.renter.is_some() {
            return Err("the session ended with a machine still running".into());
        }
        Ok(())
    }

    fn on(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Tick { side, at } => {
                if self.ticks.get(&side) == Some(&at) {
                    self.ticks.remove(&side);
                    match side {
                        Side::Provider => self.provider_input(ProviderInput::Tick)?,
                        Side::Renter => self.renter_input(RenterInput::Tick)?,
                    }
                }
            }
            Event::Arrive { to, msg, token } => self.arrive(to, msg, token)?,
            Event::Answer { token, response } => self.answer(token, response)?,
            Event::Exit { exec } => {
                // The output goes to the renter with the signed result, once the machine
                // has signed it ([`ProviderAction::CallEnded`]).
                if let Some(exit) = self.sandbox.get(&exec).cloned()
                    && !self.sandbox_closed
                {
                    let output = [ContentHash::of(OUTPUT), ContentHash::of(b"")];
                    let artefacts = self.keep_artefacts(exec);
                    self.provider_input(ProviderInput::Exited {
                        exit,
                        output,
                        artefacts,
                    })?;
                }
            }
            Event::Agent => self.agent(),
            Event::Crash { side } => self.crash(side)?,
        }
        Ok(())
    }

    /// The renter's agent: a call now and then, and a close at some point.
    fn agent(&mut self) {
        let Some(renter) = self.renter.as_mut() else {
            return;
        };
        if renter.has_ended() || self.closing {
            return;
        }
        let rng = &mut self.world.rng;
        if self.calls_started >= 2 && rng.chance(20) {
            self.closing = true;
            self.close_asked = Some(self.now().saturating_sub(self.started));
            self.send(
                Side::Renter,
                Msg::Close(CloseReason::RenterRequested),
                Route::Close,
            );
            return;
        }
        let exec = ExecId::from_bytes(rng.id());
        // Half the calls name an output, whose copy the provider keeps and charges for.
        let outputs = if rng.chance(50) {
            vec![OUTPUT_PATH.to_owned()]
        } else {
            Vec::new()
        };
        if renter
            .start_exec(exec, call_terms(), "{}", &outputs)
            .is_ok()
        {
            self.calls_started += 1;
            let request = Exec {
                session: self.session,
                exec,
                args_json: "{}".into(),
                offer: None,
                outputs,
            };
            self.send(Side::Renter, Msg::Exec(request), Route::Exec { exec });
        }
        let next =
            self.now() + Duration::from_millis(50) + self.world.rng.upto(Duration::from_secs(2));
        self.queue.at(next, Event::Agent);
    }

    /// Puts a request on the wire from `from`: lost, late, or twice.
    fn send(&mut self, from: Side, msg: Msg, route: Route) {
        let to = match from {
            Side::Provider => Side::Renter,
            Side::Renter => Side::Provider,
        };
        let token = self.token(from, route);
        self.world.report.messages += 1;
        if self.lost(token) {
            return;
        }
        if self.world.rng.chance(self.world.faults.duplicate) {
            let twin = self.token(from, Route::Nobody);
            let at = self.arrival();
            let msg = msg.clone();
            self.queue.at(
                at,
                Event::Arrive {
                    to,
                    msg,
                    token: twin,
                },
            );
        }
        let at = self.arrival();
        self.queue.at(at, Event::Arrive { to, msg, token });
    }

    fn token(&mut self, asker: Side, route: Route) -> Token {
        self.next_token += 1;
        self.routes.insert(self.next_token, (asker, route));
        self.next_token
    }

    /// The answer to `token` travels back to its asker: lost (it times out), or late.
    fn reply(&mut self, token: Token, response: SessionResponse) {
        if self.lost(token) {
            return;
        }
        let at = self.arrival();
        let response = Some(response);
        self.queue.at(at, Event::Answer { token, response });
    }

    /// Whether the wire loses what travels for `token` (the request or its answer): the
    /// asker then hears nothing until its request times out.
    fn lost(&mut self, token: Token) -> bool {
        if !self.world.rng.chance(self.world.faults.drop) {
            return false;
        }
        self.lossy = true;
        self.world.report.dropped += 1;
        let at = self.now() + REQUEST_TIMEOUT;
        self.queue.at(
            at,
            Event::Answer {
                token,
                response: None,
            },
        );
        true
    }

    /// When something put on the wire now arrives.
    fn arrival(&mut self) -> Duration {
        self.now() + self.world.rng.upto(self.max_delay)
    }

    fn arrive(&mut self, to: Side, msg: Msg, token: Token) -> Result<(), String> {
        let gone = || error(RpcErrorCode::SessionEnded, "the session has ended");
        match to {
            Side::Provider => {
                if self
                    .provider
                    .as_ref()
                    .is_none_or(ProviderMachine::has_ended)
                {
                    self.reply(token, gone());
                    return Ok(());
                }
                match msg {
                    Msg::Exec(exec) => self.provider_input(ProviderInput::Exec {
                        exec,
                        terms: call_terms(),
                        reply: token,
                    }),
                    Msg::Close(reason) => self.provider_input(ProviderInput::Close {
                        reason,
                        reply: token,
                    }),
                    other => Err(format!("the provider got a renter's request: {other:?}")),
                }
            }
            Side::Renter => {
                let Some(renter) = self.renter.as_mut().filter(|r| !r.has_ended()) else {
                    self.reply(token, gone());
                    return Ok(());
                };
                renter.heard();
                match msg {
                    Msg::Receipt(receipt) => self.renter_input(RenterInput::Receipt {
                        receipt,
                        reply: token,
                        lane_acked: Usdc::ZERO,
                    }),
                    Msg::Close(reason) => self.renter_input(RenterInput::Closed {
                        reason,
                        reply: token,
                    }),
                    Msg::Events(batch) => {
                        let response = match renter.check_events(&batch) {
                            Ok(_) => {
                                let actions = renter.accept_events(&batch, received(&batch));
                                self.renter_actions(actions)?;
                                SessionResponse::Done
                            }
                            Err(refused) => refused.response(),
                        };
                        self.reply(token, response);
                        Ok(())
                    }
                    Msg::Exec(_) => Err("the renter got a provider's request".into()),
                }
            }
        }
    }

    fn answer(&mut self, token: Token, response: Option<SessionResponse>) -> Result<(), String> {
        let Some((asker, route)) = self.routes.remove(&token) else {
            return Ok(());
        };
        let alive = match asker {
            Side::Provider => self.provider.is_some(),
            Side::Renter => self.renter.is_some(),
        };
        match route {
            Route::Nobody => Ok(()),
            Route::Receipt if alive => {
                let delivery = match response {
                    Some(answer) => Delivery::Answered(answer),
                    None => Delivery::Failed("no answer".into()),
                };
                self.provider_input(ProviderInput::Delivered(delivery))
            }
            Route::Events { batch, .. }
                if alive && matches!(response, Some(SessionResponse::Done)) =>
            {
                self.provider_input(ProviderInput::ResultDelivered { exec: batch.exec })
            }
            Route::Events { batch, attempt } if alive && attempt < ATTEMPTS => {
                let busy = matches!(
                    response,
                    None | Some(SessionResponse::Error {
                        code: RpcErrorCode::RateLimited,
                        ..
                    })
                );
                if busy {
                    let msg = Msg::Events(batch.clone());
                    self.send(
                        Side::Provider,
                        msg,
                        Route::Events {
                            batch,
                            attempt: attempt + 1,
                        },
                    );
                }
                Ok(())
            }
            Route::Notice { reason, attempt } if response.is_none() && attempt < ATTEMPTS => {
                self.send(
                    asker,
                    Msg::Close(reason),
                    Route::Notice {
                        reason,
                        attempt: attempt + 1,
                    },
                );
                Ok(())
            }
            Route::Exec { exec } if alive => {
                if !matches!(response, Some(SessionResponse::ExecStarted { .. }))
                    && let Some(renter) = self.renter.as_mut()
                {
                    renter.exec_failed(exec);
                }
                Ok(())
            }
            Route::Close if alive => self.renter_input(RenterInput::Finish),
            _ => Ok(()),
        }
    }

    /// `side` dies with its machine, then restarts on its ledger: it closes out the
    /// session as `Restarted` and tells the other side.
    fn crash(&mut self, side: Side) -> Result<(), String> {
        match side {
            Side::Provider => match self.provider.take() {
                Some(machine) => self.settle_account(side, machine.meter(), None),
                None => return Ok(()),
            },
            Side::Renter => match self.renter.take() {
                Some(machine) => self.settle_account(side, machine.meter(), None),
                None => return Ok(()),
            },
        }
        self.crashed = true;
        self.world.report.crashes += 1;
        if side == Side::Provider {
            self.sandbox_closed = true;
        }
        self.world.reopen(side)?;
        let status = SessionStatus::Closed(CloseReason::Restarted);
        self.world
            .store(side)
            .set_status(&self.session, status)
            .map_err(|e| e.to_string())?;
        let reason = CloseReason::Restarted;
        self.send(
            side,
            Msg::Close(reason),
            Route::Notice { reason, attempt: 1 },
        );
        Ok(())
    }

    fn schedule_ticks(&mut self) {
        let wakes = [
            (
                Side::Provider,
                self.provider.as_ref().and_then(ProviderMachine::wake_at),
            ),
            (
                Side::Renter,
                self.renter.as_ref().and_then(RenterMachine::wake_at),
            ),
        ];
        for (side, wake) in wakes {
            match wake {
                Some(at) if self.ticks.get(&side) != Some(&at) => {
                    self.ticks.insert(side, at);
                    self.queue.at(at.max(self.now()), Event::Tick { side, at });
                }
                Some(_) => {}
                None => {
                    self.ticks.remove(&side);
                }
            }
        }
    }
}
