//! The two nodes' drivers in the simulation: what each machine asks, done on the
//! simulated network, sandbox and the real ledgers.

use std::time::Duration;

use orien_ledger::{Meter, SessionStatus};
use orien_protocol::{
    Clock, CloseReason, ExecEvent, ExecEvents, ExecExit, ExecOutcome, Millis, OutputChunk,
    OutputStream, ReceiptAck, SessionResponse, Usage,
};

use super::{Account, Event, MAX_EXEC, Msg, Route, Side, Sim, Token};
use crate::session::provider_machine::{ProviderAction, ProviderInput};
use crate::session::renter_machine::{RenterAction, RenterInput};

impl Sim<'_> {
    pub(super) fn provider_input(&mut self, input: ProviderInput<Token>) -> Result<(), String> {
        let Some(machine) = self.provider.as_mut() else {
            return Ok(());
        };
        let mut actions = std::collections::VecDeque::from(machine.handle(input));
        machine.check_invariants();
        while let Some(action) = actions.pop_front() {
            match action {
                ProviderAction::Reply(token, response) => self.reply(token, response),
                ProviderAction::StartCall { exec, outputs, .. } => {
                    let outputs = outputs.iter().map(ToString::to_string).collect();
                    self.outputs.insert(exec, outputs);
                    let rng = &mut self.world.rng;
                    // Most calls end in time; some run into the tool's limit.
                    let runs = Duration::from_millis(20) + rng.upto(Duration::from_millis(2_600));
                    let limit = MAX_EXEC.to_duration();
                    let (outcome, wall) = if runs > limit {
                        (ExecOutcome::TimedOut, limit)
                    } else {
                        (ExecOutcome::Exited, runs)
                    };
                    let exit = ExecExit {
                        exec,
                        outcome,
                        exit_code: Some(0),
                        wall: Millis::from_duration(wall),
                        cpu: Millis::from_duration(wall / 2),
                        peak_memory_bytes: 0,
                        stdout_bytes: 5,
                        stderr_bytes: 0,
                        stdout_truncated: false,
                        stderr_truncated: false,
                    };
                    self.sandbox.insert(exec, exit);
                    let at = self.now() + wall;
                    self.queue.at(at, Event::Exit { exec });
                }
                // The simulation keeps no execution records; the exit goes out with its
                // signed result.
                ProviderAction::CallEnded { exec, result, .. } => {
                    if let Some(exit) = self.sandbox.remove(&exec)
                        && result.is_some()
                    {
                        let events = vec![
                            ExecEvent::Output(OutputChunk {
                                exec,
                                stream: OutputStream::Stdout,
                                offset: 0,
                                data: super::OUTPUT.to_vec(),
                            }),
                            ExecEvent::Exit(exit),
                        ];
                        let batch = ExecEvents {
                            session: self.session,
                            exec,
                            seq: 0,
                            events,
                            result,
                        };
                        let msg = Msg::Events(batch.clone());
                        self.send(Side::Provider, msg, Route::Events { batch, attempt: 1 });
                    }
                }
                ProviderAction::CloseSandbox => self.sandbox_closed = true,
                ProviderAction::Send(receipt) => {
                    let seq = receipt.claimed().map_err(|e| e.to_string())?.seq;
                    let now = self.world.clock.wall();
                    self.first_sent.entry(seq).or_insert(now);
                    self.send(Side::Provider, Msg::Receipt(receipt), Route::Receipt);
                }
                ProviderAction::Commit(acked) => {
                    let issued = acked.receipt().issued_at;
                    let sent = self
                        .first_sent
                        .get(&acked.receipt().seq)
                        .copied()
                        .unwrap_or(issued);
                    let result = self
                        .world
                        .store(Side::Provider)
                        .ingest_checked(*acked)
                        .map_err(|e| e.to_string());
                    if result.is_ok() {
                        self.world.report.receipts += 1;
                        self.last_ack = (sent, self.world.clock.wall());
                    }
                    let machine = self
                        .provider
                        .as_mut()
                        .expect("the provider commits while it runs");
                    actions.extend(machine.handle(ProviderInput::Committed(result)));
                }
                ProviderAction::Ended { reason, replies } => {
                    let machine = self.provider.take().expect("the provider ends once");
                    self.settle_account(Side::Provider, machine.meter(), Some(reason));
                    self.world
                        .store(Side::Provider)
                        .set_status(&self.session, SessionStatus::Closed(reason))
                        .map_err(|e| e.to_string())?;
                    if !replies.is_empty() {
                        for token in replies {
                            self.reply(token, SessionResponse::Done);
                        }
                    } else if reason != CloseReason::RenterRequested {
                        let route = Route::Notice { reason, attempt: 1 };
                        self.send(Side::Provider, Msg::Close(reason), route);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn renter_input(&mut self, input: RenterInput<Token>) -> Result<(), String> {
        let Some(machine) = self.renter.as_mut() else {
            return Ok(());
        };
        let actions = machine.handle(input);
        self.renter_actions(actions)
    }

    pub(super) fn renter_actions(
        &mut self,
        actions: Vec<RenterAction<Token>>,
    ) -> Result<(), String> {
        let mut actions = std::collections::VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                RenterAction::Reply(token, response) => {
                    if let SessionResponse::Ack(ack) = &response {
                        // No ack without a durable commit: the receipt it names is on disk.
                        let seq = orien_protocol::wire::decode::<ReceiptAck>(ack.payload_bytes())
                            .map_err(|e| e.to_string())?
                            .seq;
                        let stored = self.world.store(Side::Renter).receipt(&self.session, seq);
                        if !matches!(stored, Ok(Some(_))) {
                            return Err(format!(
                                "the renter released the ack of receipt {seq} before committing it"
                            ));
                        }
                    }
                    self.reply(token, response);
                }
                RenterAction::Commit(acked) => {
                    let result = self
                        .world
                        .store(Side::Renter)
                        .ingest_checked(*acked)
                        .map_err(|e| e.to_string());
                    let machine = self
                        .renter
                        .as_mut()
                        .expect("the renter commits while it runs");
                    actions.extend(machine.handle(RenterInput::Committed(result)));
                }
                RenterAction::Suspend { status, evidence } => {
                    let store = self.world.store(Side::Renter);
                    if let Some(evidence) = evidence {
                        store
                            .record_evidence(&evidence)
                            .map_err(|e| e.to_string())?;
                    }
                    store
                        .set_status(&self.session, status)
                        .map_err(|e| e.to_string())?;
                }
                RenterAction::Ended(reason) => {
                    let machine = self.renter.take().expect("the renter ends once");
                    self.settle_account(Side::Renter, machine.meter(), Some(reason));
                    self.world
                        .store(Side::Renter)
                        .set_status(&self.session, SessionStatus::Closed(reason))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if let Some(machine) = &self.renter {
            machine.check_invariants();
        }
        Ok(())
    }

    pub(super) fn settle_account(&mut self, side: Side, meter: &Meter, ended: Option<CloseReason>) {
        let reading = meter.current();
        self.accounts.insert(
            side,
            Account {
                usage: Some(Usage {
                    session: reading.session_time,
                    exec: reading.exec_time,
                }),
                artefacts: reading.artefact_amount,
                worked: reading.amount,
                ended,
            },
        );
    }
}
