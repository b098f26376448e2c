//! The detector's training gives the same model as before the fixed-shape kernels
//! (`src/fixed.rs`) replaced the general code for 3 states of 4 features: parameters,
//! iteration counts and final log-likelihoods recorded from the general code (commit
//! ca4020e) on fixed data, compared within 1e-9. (They are in fact equal bit for bit; the
//! unit test `fixed_shape_kernels_equal_the_general_code_bit_for_bit` checks that.)

#![allow(clippy::unwrap_used, clippy::panic)]

use herd_regime::Candle;
use herd_regime::detector::TrainedModel;
use herd_regime::hmm::{FitConfig, HmmParams};
use herd_regime::parse_candles_csv;

fn reference_candles() -> Vec<Candle> {
    let path = format!("{}/reference/candles.csv", env!("CARGO_MANIFEST_DIR"));
    parse_candles_csv(&std::fs::read_to_string(path).unwrap()).unwrap()
}

mod common;
use common::walk;

fn flat(p: &HmmParams) -> Vec<f64> {
    std::iter::once(&p.startprob)
        .chain(&p.transmat)
        .chain(&p.means)
        .chain(&p.vars)
        .flatten()
        .copied()
        .collect()
}

struct Recorded {
    what: &'static str,
    candles: Vec<Candle>,
    fit: FitConfig,
    params: HmmParams,
    iterations: usize,
    converged: bool,
    final_log_likelihood: f64,
}

#[allow(clippy::excessive_precision)]
fn recorded() -> Vec<Recorded> {
    vec![
        Recorded {
            what: "reference candles, default config",
            candles: reference_candles(),
            fit: FitConfig::default(),
            params: HmmParams {
                startprob: vec![1.0, 8.534401163507757e-158, 2.0151573859565484e-53],
                transmat: vec![
                    vec![0.962012648062786, 8.899295469050732e-22, 0.037987351937214],
                    vec![
                        3.5354260393527224e-29,
                        0.9842502756561198,
                        0.015749724343880323,
                    ],
                    vec![
                        0.03446135669031658,
                        0.015436811577760126,
                        0.9501018317319233,
                    ],
                ],
                means: vec![
                    vec![
                        0.13940646267800044,
                        -1.0543071197158556,
                        -1.005897371839877,
                        0.043655448012666916,
                    ],
                    vec![
                        -0.11051610525721815,
                        1.102339890449293,
                        1.1121348960403168,
                        -0.008039137791677146,
                    ],
                    vec![
                        -0.018563439064981986,
                        -0.12083819599082915,
                        -0.17449978300849478,
                        -0.03185453965651784,
                    ],
                ],
                vars: vec![
                    vec![
                        0.9273616526658677,
                        0.16559986405487537,
                        0.13566434190622534,
                        0.9556919531962081,
                    ],
                    vec![
                        0.9403216012206989,
                        0.44944625302144026,
                        0.4642785751408713,
                        0.9994578718424291,
                    ],
                    vec![
                        1.0946916795860229,
                        0.08182627289958154,
                        0.14820201096358251,
                        1.0381363933923262,
                    ],
                ],
            },
            iterations: 17,
            converged: true,
            final_log_likelihood: -4019.334860026611,
        },
        Recorded {
            what: "reference candles, seed 7, tol 1e-6",
            candles: reference_candles(),
            fit: FitConfig {
                seed: 7,
                tol: 1e-6,
                ..FitConfig::default()
            },
            params: HmmParams {
                startprob: vec![0.0, 1.0, 8.313270257436417e-135],
                transmat: vec![
                    vec![
                        0.9842485081456502,
                        4.497875523656373e-71,
                        0.01575149185434981,
                    ],
                    vec![
                        1.1756597598894656e-45,
                        0.9622112055936246,
                        0.03778879440637533,
                    ],
                    vec![
                        0.015456297838178035,
                        0.03437644867971297,
                        0.9501672534821091,
                    ],
                ],
                means: vec![
                    vec![
                        -0.11057359661590065,
                        1.1024337264802972,
                        1.1122072074983629,
                        -0.007988501324807698,
                    ],
                    vec![
                        0.13977653861215109,
                        -1.0536425375909848,
                        -1.0050208743479725,
                        0.04354740370867165,
                    ],
                    vec![
                        -0.019072026625505514,
                        -0.12011870299923012,
                        -0.17408578792542084,
                        -0.03190672153658542,
                    ],
                ],
                vars: vec![
                    vec![
                        0.9403014260788505,
                        0.44941664958418504,
                        0.46427730628005814,
                        0.9994604804877301,
                    ],
                    vec![
                        0.9276540301747404,
                        0.16566694531787074,
                        0.1360709932506231,
                        0.9557581554287021,
                    ],
                    vec![
                        1.0945065884689538,
                        0.08159464425965687,
                        0.14826492650170287,
                        1.0381871356257482,
                    ],
                ],
            },
            iterations: 27,
            converged: true,
            final_log_likelihood: -4019.3308980573884,
        },
        Recorded {
            what: "walk of 4,000 candles (the 1 m preset's depth)",
            candles: walk(4000),
            fit: FitConfig::default(),
            params: HmmParams {
                startprob: vec![2.723324978665259e-167, 1.0, 1.0362172857121068e-60],
                transmat: vec![
                    vec![
                        0.9906393050549158,
                        0.006321433469460097,
                        0.0030392614756240377,
                    ],
                    vec![0.002194111908135587, 0.4761982339876488, 0.5216076541042155],
                    vec![
                        0.007683856318742067,
                        0.5212124283307962,
                        0.47110371535046175,
                    ],
                ],
                means: vec![
                    vec![
                        -0.07159370650463691,
                        1.2033285840213443,
                        1.2296024369938894,
                        0.004382956210436703,
                    ],
                    vec![
                        0.01791146224554569,
                        -0.5766834679326531,
                        -0.5972134559801751,
                        0.8199648066026444,
                    ],
                    vec![
                        0.051925003791708786,
                        -0.5948270832332491,
                        -0.5998104765634795,
                        -0.8310402192964252,
                    ],
                ],
                vars: vec![
                    vec![
                        0.9997617971356546,
                        0.1980063970316446,
                        0.15520714555248172,
                        1.020430211698246,
                    ],
                    vec![
                        0.9937826050732851,
                        0.32700060844525936,
                        0.3089928483270402,
                        0.31584831742711006,
                    ],
                    vec![
                        0.9984941673952099,
                        0.35796975145520854,
                        0.3252250896951109,
                        0.3013120734054538,
                    ],
                ],
            },
            iterations: 18,
            converged: true,
            final_log_likelihood: -17219.750437214923,
        },
        Recorded {
            what: "walk of 1,440 candles (the 15 m preset's depth)",
            candles: walk(1440),
            fit: FitConfig::default(),
            params: HmmParams {
                startprob: vec![2.1506079525241116e-300, 1.2178670684116487e-135, 1.0],
                transmat: vec![
                    vec![
                        0.9845617924071779,
                        0.015013245020861097,
                        0.00042496257196099596,
                    ],
                    vec![0.017435713013945333, 0.4040606411339894, 0.5785036458520653],
                    vec![
                        2.619538837531305e-10,
                        0.4188183441499022,
                        0.5811816555881438,
                    ],
                ],
                means: vec![
                    vec![
                        -0.06916366121169741,
                        1.2146422703163358,
                        1.2277517583726714,
                        0.03153825645968671,
                    ],
                    vec![
                        0.027251208952869838,
                        -0.49889648936071224,
                        -0.5073939958011984,
                        -0.9788623743598224,
                    ],
                    vec![
                        0.036724952584340304,
                        -0.6302898643237852,
                        -0.6348447428029975,
                        0.6810809871295082,
                    ],
                ],
                vars: vec![
                    vec![
                        0.9327896835995086,
                        0.3071960155745674,
                        0.2724141210849721,
                        1.0215051060528906,
                    ],
                    vec![
                        1.0552931219234054,
                        0.28031224610399696,
                        0.2656537982639336,
                        0.24417191035245256,
                    ],
                    vec![
                        1.0091522331893195,
                        0.304568262148224,
                        0.3054691991698773,
                        0.3717299113610995,
                    ],
                ],
            },
            iterations: 28,
            converged: true,
            final_log_likelihood: -6232.862012467521,
        },
    ]
}

#[test]
fn training_gives_the_recorded_models_within_1e9() {
    for r in recorded() {
        let model = TrainedModel::train(&r.candles, &r.fit).unwrap();
        let report = model.report();
        assert_eq!(report.iterations, r.iterations, "{}", r.what);
        assert_eq!(report.converged, r.converged, "{}", r.what);
        let last = report.log_likelihood_history.last().copied().unwrap();
        assert!(
            (last - r.final_log_likelihood).abs() <= 1e-9 * r.final_log_likelihood.abs(),
            "{}: lnL {last} vs {}",
            r.what,
            r.final_log_likelihood
        );
        let (got, want) = (flat(model.hmm().params()), flat(&r.params));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-9, "{} value {i}: {g} vs {w}", r.what);
        }
    }
}
