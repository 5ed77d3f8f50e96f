//! Sample messages and proptest strategies shared by the protocol's tests.
#![allow(dead_code, unreachable_pub)]

use orien_protocol::*;
use proptest::prelude::*;

/// The provider key of every fixed sample (seed 0x01…).
pub fn provider_key() -> NodeKey {
    NodeKey::from_secret_bytes([1u8; 32])
}

/// The renter key of every fixed sample (seed 0x02…).
pub fn renter_key() -> NodeKey {
    NodeKey::from_secret_bytes([2u8; 32])
}

pub fn sample_limits() -> ResourceLimits {
    ResourceLimits {
        max_exec: Millis(30_000),
        cpu_millis: 1_000,
        memory_bytes: 256 << 20,
        pids: 64,
        tmpfs_bytes: 16 << 20,
        output_bytes: 1 << 20,
        workspace_bytes: 64 << 20,
        concurrent_execs: 2,
    }
}

pub fn sample_offer() -> Offer {
    Offer {
        provider: provider_key().node_id(),
        tool: ToolName::new("sha256sum").unwrap(),
        version: "1.36.1".into(),
        description: "SHA-256 of a file in the workspace".into(),
        image_digest: ImageDigest::from_bytes([0xab; 32]),
        args_schema:
            r#"{"type":"object","properties":{"file":{"type":"string"}},"required":["file"]}"#
                .into(),
        pricing: Pricing {
            session_per_minute: Usdc::from_micros(1_000),
            exec_per_minute: Usdc::from_micros(60_000),
            artefact_per_gib: Usdc::from_micros(50_000),
        },
        limits: sample_limits(),
        keep_artefacts: Millis(600_000),
        payout: EvmAddress::from_bytes([0x11; 20]),
        issued_at: Timestamp(1_763_900_000_000),
        expires_at: Timestamp(1_763_903_600_000),
    }
}

pub fn sample_profile() -> ProviderProfile {
    ProviderProfile {
        provider: provider_key().node_id(),
        display_name: "Ada's workstation".into(),
        description: "Checksums and text tools on a quiet 8-core machine".into(),
        payout: EvmAddress::from_bytes([0x11; 20]),
        tools: vec![
            ToolPrice {
                tool: ToolName::new("grep").unwrap(),
                pricing: Pricing {
                    session_per_minute: Usdc::from_micros(500),
                    exec_per_minute: Usdc::from_micros(30_000),
                    artefact_per_gib: Usdc::ZERO,
                },
            },
            ToolPrice {
                tool: ToolName::new("sha256sum").unwrap(),
                pricing: sample_offer().pricing,
            },
        ],
        software: "orien-node 0.1.0".into(),
        sessions_completed: 42,
        online_since: Timestamp(1_763_800_000_000),
        issued_at: Timestamp(1_763_900_000_000),
        expires_at: Timestamp(1_763_903_600_000),
    }
}

pub fn sample_session() -> SessionId {
    SessionId::from_bytes([0x5e; 16])
}

pub fn sample_receipt() -> UsageReceipt {
    UsageReceipt {
        session: sample_session(),
        seq: 2,
        session_time: Millis(65_000),
        exec_time: Millis(4_250),
        cpu_time: Millis(3_900),
        exec_amount: Usdc::from_micros(4_250),
        artefact_amount: Usdc::from_micros(50),
        amount: Usdc::from_micros(5_383),
        prev: ReceiptHash::from_bytes([0x77; 32]),
        issued_at: Timestamp(1_763_900_065_000),
        results: ResultsCommitment {
            count: 3,
            digest: ResultHash::from_bytes([0x99; 32]),
        },
    }
}

/// The provider's signed result of [`sample_exit`]'s call.
pub fn sample_result() -> ExecResult {
    let ExecEvent::Exit(exit) = sample_exit() else {
        unreachable!("sample_exit is an exit")
    };
    result_of(sample_session(), exit)
}

/// A result for `exit`, with fixed hashes.
pub fn result_of(session: SessionId, exit: ExecExit) -> ExecResult {
    ExecResult {
        session,
        seq: 4,
        tool: ToolName::new("sha256sum").unwrap(),
        args: ContentHash::of(br#"{"file":"data/input.txt"}"#),
        exit,
        stdout: ContentHash::of(b"stdout"),
        stderr: ContentHash::of(b""),
        artefacts: vec![Artefact {
            path: "out/report.txt".into(),
            kept: ArtefactKept::File {
                size: 6,
                sha256: ContentHash::of(b"report"),
            },
        }],
    }
}

/// The renter's attestation of the provider, with its payment of the sample receipt.
pub fn sample_attestation() -> Attestation {
    let receipt = provider_key().sign(&sample_receipt()).unwrap();
    let ack = renter_key()
        .sign(&ReceiptAck {
            session: sample_session(),
            seq: 2,
            receipt: receipt.receipt_hash(),
            voucher: None,
        })
        .unwrap();
    Attestation {
        attester: renter_key().node_id(),
        issued_at: Timestamp(1_700_000_100_000),
        providers: vec![ProviderRecord {
            provider: provider_key().node_id(),
            calls_completed: 41,
            calls_failed: 2,
            sessions_failed: 1,
            disputes: 0,
        }],
        payments: vec![PaymentProof { receipt, ack }],
    }
}

pub fn sample_ack() -> ReceiptAck {
    ReceiptAck {
        session: sample_session(),
        seq: 2,
        receipt: ReceiptHash::from_bytes([0x88; 32]),
        voucher: Some(Voucher {
            lane: LaneId::from_bytes([0x1a; 32]),
            cumulative: Usdc::from_micros(5_333),
            signature: EvmSignature([0x2b; 65]),
        }),
    }
}

pub fn sample_open() -> OpenSession {
    OpenSession {
        offer: OfferId::from_bytes([0x0f; 32]),
        renter: renter_key().node_id(),
        budget: Usdc::from_micros(2_000_000),
        max_duration: Millis(3_600_000),
        payment: PaymentLane::Escrow {
            chain_id: 31_337,
            contract: EvmAddress::from_bytes([0xc0; 20]),
            lane: LaneId::from_bytes([0x1a; 32]),
            renter_wallet: EvmAddress::from_bytes([0x22; 20]),
        },
        lane: LaneHead {
            acked: Usdc::from_micros(5_333),
            voucher: Some(Voucher {
                lane: LaneId::from_bytes([0x1a; 32]),
                cumulative: Usdc::from_micros(5_333),
                signature: EvmSignature([0x2b; 65]),
            }),
        },
    }
}

pub fn sample_accepted() -> SessionAccepted {
    SessionAccepted {
        session: sample_session(),
        offer: OfferId::from_bytes([0x0f; 32]),
        budget: Usdc::from_micros(2_000_000),
        max_duration: Millis(3_600_000),
        receipt_interval: Millis(5_000),
        ack_timeout: Millis(10_000),
        lane: LaneHead {
            acked: Usdc::from_micros(12_000),
            voucher: None,
        },
    }
}

pub fn sample_rejected() -> SessionRejected {
    SessionRejected {
        offer: OfferId::from_bytes([0x0f; 32]),
        reason: RejectReason::InsufficientDeposit {
            available: Usdc::from_micros(1_500_000),
        },
    }
}

pub fn sample_exec() -> Exec {
    Exec {
        session: sample_session(),
        exec: ExecId::from_bytes([0xe1; 16]),
        args_json: r#"{"file":"data/input.txt"}"#.into(),
        offer: Some(OfferId::from_bytes([0x0f; 32])),
        outputs: vec!["out/report.txt".into()],
    }
}

pub fn sample_output() -> ExecEvent {
    ExecEvent::Output(OutputChunk {
        exec: ExecId::from_bytes([0xe1; 16]),
        stream: OutputStream::Stdout,
        offset: 0,
        data: b"9f86d081884c7d65  data/input.txt\n".to_vec(),
    })
}

pub fn sample_exit() -> ExecEvent {
    ExecEvent::Exit(ExecExit {
        exec: ExecId::from_bytes([0xe1; 16]),
        outcome: ExecOutcome::Exited,
        exit_code: Some(0),
        wall: Millis(42),
        cpu: Millis(3),
        peak_memory_bytes: 1_572_864,
        stdout_bytes: 34,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
    })
}

pub fn sample_close() -> CloseSession {
    CloseSession {
        session: sample_session(),
        reason: CloseReason::RenterRequested,
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

pub fn node_key() -> impl Strategy<Value = NodeKey> {
    any::<[u8; 32]>().prop_map(NodeKey::from_secret_bytes)
}

pub fn node_id() -> impl Strategy<Value = NodeId> {
    node_key().prop_map(|k| k.node_id())
}

pub fn usdc() -> impl Strategy<Value = Usdc> {
    any::<u64>().prop_map(Usdc::from_micros)
}

pub fn millis() -> impl Strategy<Value = Millis> {
    any::<u64>().prop_map(Millis)
}

pub fn tool_name() -> impl Strategy<Value = ToolName> {
    "[a-z0-9][a-z0-9._-]{0,63}".prop_map(|s| ToolName::new(s).unwrap())
}

pub fn evm_address() -> impl Strategy<Value = EvmAddress> {
    any::<[u8; 20]>().prop_filter_map("zero address", |b| {
        let a = EvmAddress::from_bytes(b);
        (a != EvmAddress::ZERO).then_some(a)
    })
}

pub fn limits() -> impl Strategy<Value = ResourceLimits> {
    (
        1u64..,
        1u32..,
        1u64..,
        1u32..,
        any::<u64>(),
        1u64..,
        any::<u64>(),
        1u32..,
    )
        .prop_map(
            |(
                max_exec,
                cpu_millis,
                memory_bytes,
                pids,
                tmpfs_bytes,
                output_bytes,
                workspace_bytes,
                concurrent_execs,
            )| {
                ResourceLimits {
                    max_exec: Millis(max_exec),
                    cpu_millis,
                    memory_bytes,
                    pids,
                    tmpfs_bytes,
                    output_bytes,
                    workspace_bytes,
                    concurrent_execs,
                }
            },
        )
}

pub fn offer() -> impl Strategy<Value = Offer> {
    (
        node_id(),
        tool_name(),
        "[ -~]{0,64}",
        "\\PC{0,200}",
        any::<[u8; 32]>(),
        prop_oneof![
            Just("{}".to_string()),
            Just(r#"{"type":"object"}"#.to_string())
        ],
        (usdc(), usdc(), usdc()),
        (limits(), 0..=MAX_KEEP_ARTEFACTS.get()),
        evm_address(),
        0u64..u64::MAX / 2,
        1u64..=24 * 3_600_000,
    )
        .prop_map(
            |(
                provider,
                tool,
                version,
                description,
                digest,
                args_schema,
                (s, e, a),
                (limits, keep),
                payout,
                issued,
                life,
            )| Offer {
                provider,
                tool,
                version,
                description,
                image_digest: ImageDigest::from_bytes(digest),
                args_schema,
                pricing: Pricing {
                    session_per_minute: s,
                    exec_per_minute: e,
                    artefact_per_gib: a,
                },
                limits,
                keep_artefacts: Millis(keep),
                payout,
                issued_at: Timestamp(issued),
                expires_at: Timestamp(issued + life),
            },
        )
}

pub fn receipt() -> impl Strategy<Value = UsageReceipt> {
    (
        any::<[u8; 16]>(),
        1u64..,
        millis(),
        millis(),
        millis(),
        usdc(),
        any::<[u8; 32]>(),
        any::<u64>(),
        (any::<u64>(), any::<[u8; 32]>()),
    )
        .prop_map(
            |(session, seq, session_time, exec_time, cpu_time, amount, prev, issued, results)| {
                UsageReceipt {
                    session: SessionId::from_bytes(session),
                    seq,
                    session_time,
                    exec_time,
                    cpu_time,
                    exec_amount: amount,
                    artefact_amount: amount,
                    amount,
                    prev: if seq == 1 {
                        ReceiptHash::GENESIS
                    } else if prev == [0u8; 32] {
                        ReceiptHash::from_bytes([1u8; 32])
                    } else {
                        ReceiptHash::from_bytes(prev)
                    },
                    issued_at: Timestamp(issued),
                    results: ResultsCommitment {
                        count: results.0,
                        digest: ResultHash::from_bytes(results.1),
                    },
                }
            },
        )
}

pub fn ack() -> impl Strategy<Value = ReceiptAck> {
    let voucher = proptest::option::of(
        (
            any::<[u8; 32]>(),
            usdc(),
            proptest::collection::vec(any::<u8>(), 65),
        )
            .prop_map(|(lane, cumulative, sig)| Voucher {
                lane: LaneId::from_bytes(lane),
                cumulative,
                signature: EvmSignature(sig.try_into().unwrap()),
            }),
    );
    (any::<[u8; 16]>(), 1u64.., any::<[u8; 32]>(), voucher).prop_map(
        |(session, seq, receipt, voucher)| ReceiptAck {
            session: SessionId::from_bytes(session),
            seq,
            receipt: ReceiptHash::from_bytes(receipt),
            voucher,
        },
    )
}

pub fn open_session() -> impl Strategy<Value = OpenSession> {
    let payment = prop_oneof![
        Just(PaymentLane::Ledger),
        (
            any::<u64>(),
            evm_address(),
            any::<[u8; 32]>(),
            evm_address()
        )
            .prop_map(|(chain_id, contract, lane, renter_wallet)| {
                PaymentLane::Escrow {
                    chain_id,
                    contract,
                    lane: LaneId::from_bytes(lane),
                    renter_wallet,
                }
            }),
    ];
    (
        any::<[u8; 32]>(),
        node_id(),
        1u64..,
        1u64..,
        payment,
        usdc(),
    )
        .prop_map(|(offer, renter, budget, dur, payment, acked)| OpenSession {
            offer: OfferId::from_bytes(offer),
            renter,
            budget: Usdc::from_micros(budget),
            max_duration: Millis(dur),
            payment,
            lane: LaneHead {
                acked,
                voucher: None,
            },
        })
}

pub fn accepted() -> impl Strategy<Value = SessionAccepted> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        usdc(),
        millis(),
        1u64..,
        1u64..,
        usdc(),
    )
        .prop_map(
            |(session, offer, budget, max_duration, interval, ack, acked)| SessionAccepted {
                session: SessionId::from_bytes(session),
                offer: OfferId::from_bytes(offer),
                budget,
                max_duration,
                receipt_interval: Millis(interval),
                ack_timeout: Millis(ack),
                lane: LaneHead {
                    acked,
                    voucher: None,
                },
            },
        )
}

pub fn rejected() -> impl Strategy<Value = SessionRejected> {
    let reason = prop_oneof![
        Just(RejectReason::UnknownOffer),
        Just(RejectReason::OfferExpired),
        usdc().prop_map(|minimum| RejectReason::BudgetTooLow { minimum }),
        usdc().prop_map(|available| RejectReason::InsufficientDeposit { available }),
        millis().prop_map(|max| RejectReason::DurationTooLong { max }),
        Just(RejectReason::AtCapacity),
        Just(RejectReason::PaymentNotSupported),
        "\\PC{0,60}".prop_map(|detail| RejectReason::SandboxUnavailable { detail }),
        "\\PC{0,60}".prop_map(|detail| RejectReason::InvalidRequest { detail }),
        Just(RejectReason::EscrowRequired),
        Just(RejectReason::LaneClosing),
        any::<u32>().prop_map(|max| RejectReason::TooManySessions { max }),
        Just(RejectReason::NotServed),
        any::<u32>().prop_map(|per_minute| RejectReason::OpeningTooOften { per_minute }),
    ];
    (any::<[u8; 32]>(), reason).prop_map(|(offer, reason)| SessionRejected {
        offer: OfferId::from_bytes(offer),
        reason,
    })
}

pub fn exec() -> impl Strategy<Value = Exec> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        "[a-z]{1,8}",
        "[ -~&&[^\"\\\\]]{0,40}",
    )
        .prop_map(|(session, exec, key, value)| Exec {
            session: SessionId::from_bytes(session),
            exec: ExecId::from_bytes(exec),
            args_json: serde_json::json!({ key: value }).to_string(),
            offer: None,
            outputs: Vec::new(),
        })
}

pub fn exec_event() -> impl Strategy<Value = ExecEvent> {
    let chunk = (
        any::<[u8; 16]>(),
        any::<bool>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(exec, err, offset, data)| {
            ExecEvent::Output(OutputChunk {
                exec: ExecId::from_bytes(exec),
                stream: if err {
                    OutputStream::Stderr
                } else {
                    OutputStream::Stdout
                },
                offset,
                data,
            })
        });
    let outcome = prop_oneof![
        Just(ExecOutcome::Exited),
        Just(ExecOutcome::TimedOut),
        Just(ExecOutcome::OutOfMemory),
        "\\PC{0,40}".prop_map(|detail| ExecOutcome::InvalidArguments { detail }),
        "\\PC{0,40}".prop_map(|detail| ExecOutcome::SandboxError { detail }),
    ];
    let exit = (
        any::<[u8; 16]>(),
        outcome,
        any::<Option<i32>>(),
        millis(),
        millis(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(exec, outcome, exit_code, wall, cpu, peak, out, err, t1, t2)| {
                ExecEvent::Exit(ExecExit {
                    exec: ExecId::from_bytes(exec),
                    outcome,
                    exit_code,
                    wall,
                    cpu,
                    peak_memory_bytes: peak,
                    stdout_bytes: out,
                    stderr_bytes: err,
                    stdout_truncated: t1,
                    stderr_truncated: t2,
                })
            },
        );
    prop_oneof![chunk, exit]
}

pub fn close_session() -> impl Strategy<Value = CloseSession> {
    let reason = prop_oneof![
        Just(CloseReason::RenterRequested),
        Just(CloseReason::BudgetExhausted),
        Just(CloseReason::MaxDuration),
        Just(CloseReason::AckTimeout),
        Just(CloseReason::Disconnected),
        Just(CloseReason::ProviderShutdown),
        Just(CloseReason::Dispute),
    ];
    (any::<[u8; 16]>(), reason).prop_map(|(session, reason)| CloseSession {
        session: SessionId::from_bytes(session),
        reason,
    })
}

pub fn sample_list_offers() -> SessionRequest {
    SessionRequest::ListOffers {
        tool: Some(ToolName::new("sha256sum").unwrap()),
    }
}

pub fn sample_offers_response() -> SessionResponse {
    SessionResponse::Offers(vec![provider_key().sign(&sample_offer()).unwrap()])
}

pub fn sample_events() -> SessionRequest {
    SessionRequest::Events(ExecEvents {
        session: sample_session(),
        exec: ExecId::from_bytes([0xe1; 16]),
        seq: 0,
        events: vec![sample_output(), sample_exit()],
        result: Some(provider_key().sign(&sample_result()).unwrap()),
    })
}

pub fn sample_receipt_request() -> SessionRequest {
    SessionRequest::Receipt(provider_key().sign(&sample_receipt()).unwrap())
}

pub fn sample_ack_response() -> SessionResponse {
    SessionResponse::Ack(renter_key().sign(&sample_ack()).unwrap())
}

pub fn session_request() -> impl Strategy<Value = SessionRequest> {
    let path = "[a-z0-9/._-]{1,40}";
    prop_oneof![
        proptest::option::of(tool_name()).prop_map(|tool| SessionRequest::ListOffers { tool }),
        open_session().prop_map(SessionRequest::Open),
        exec().prop_map(SessionRequest::Exec),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::collection::vec(exec_event(), 0..4)
        )
            .prop_map(|(session, exec, seq, mut events)| {
                // An exit may only come last.
                let exits: Vec<ExecEvent> = events
                    .iter()
                    .filter(|e| matches!(e, ExecEvent::Exit(_)))
                    .cloned()
                    .collect();
                events.retain(|e| !matches!(e, ExecEvent::Exit(_)));
                events.extend(exits.into_iter().take(1));
                let session = SessionId::from_bytes(session);
                // The signed result comes with the exit.
                let result = match events.last() {
                    Some(ExecEvent::Exit(exit)) => Some(
                        provider_key()
                            .sign(&result_of(session, exit.clone()))
                            .unwrap(),
                    ),
                    _ => None,
                };
                SessionRequest::Events(ExecEvents {
                    session,
                    exec: ExecId::from_bytes(exec),
                    seq,
                    events,
                    result,
                })
            }),
        (node_key(), receipt()).prop_map(|(key, r)| SessionRequest::Receipt(key.sign(&r).unwrap())),
        close_session().prop_map(SessionRequest::Close),
        (
            any::<[u8; 16]>(),
            path,
            proptest::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(s, path, data)| SessionRequest::PutFile {
                session: SessionId::from_bytes(s),
                path,
                data
            }),
        any::<[u8; 16]>().prop_map(|s| SessionRequest::ListFiles {
            session: SessionId::from_bytes(s)
        }),
        (any::<[u8; 16]>(), path).prop_map(|(s, path)| SessionRequest::GetFile {
            session: SessionId::from_bytes(s),
            path
        }),
        proptest::option::of(any::<[u8; 32]>()).prop_map(|after| SessionRequest::ListBook {
            after: after.map(OfferId::from_bytes)
        }),
        proptest::option::of(node_key()).prop_map(|after| SessionRequest::ListProfiles {
            after: after.map(|key| key.node_id())
        }),
    ]
}

pub fn session_response() -> impl Strategy<Value = SessionResponse> {
    let offers = proptest::collection::vec((node_key(), offer()), 0..3).prop_map(|items| {
        SessionResponse::Offers(
            items
                .into_iter()
                .map(|(key, mut offer)| {
                    offer.provider = key.node_id();
                    key.sign(&offer).unwrap()
                })
                .collect(),
        )
    });
    let error = (
        prop_oneof![
            Just(RpcErrorCode::BadRequest),
            Just(RpcErrorCode::RateLimited),
            Just(RpcErrorCode::Internal)
        ],
        "\\PC{0,60}",
    )
        .prop_map(|(code, detail)| SessionResponse::Error { code, detail });
    prop_oneof![
        offers,
        error,
        accepted().prop_map(SessionResponse::Accepted),
        rejected().prop_map(SessionResponse::Rejected),
        any::<[u8; 16]>().prop_map(|e| SessionResponse::ExecStarted {
            exec: ExecId::from_bytes(e)
        }),
        Just(SessionResponse::Done),
        (node_key(), ack()).prop_map(|(key, a)| SessionResponse::Ack(key.sign(&a).unwrap())),
        "\\PC{0,60}".prop_map(|detail| SessionResponse::Disputed { detail }),
        proptest::collection::vec(("[a-z0-9/._-]{1,40}", any::<u64>(), any::<bool>()), 0..5)
            .prop_map(|files| SessionResponse::Files(
                files
                    .into_iter()
                    .map(|(path, size, is_dir)| FileInfo { path, size, is_dir })
                    .collect()
            )),
        proptest::collection::vec(any::<u8>(), 0..256)
            .prop_map(|data| SessionResponse::File { data }),
        proptest::collection::vec(node_key(), 0..3).prop_map(|keys| SessionResponse::Profiles(
            keys.into_iter()
                .map(|key| {
                    let mut profile = sample_profile();
                    profile.provider = key.node_id();
                    key.sign(&profile).unwrap()
                })
                .collect()
        )),
    ]
}
