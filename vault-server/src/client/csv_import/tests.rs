//! Unit tests of the CSV mapping, reading and summary.

use super::*;
use proptest::prelude::*;

fn headers(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| (*s).to_owned()).collect()
}

fn read_all(data: &[u8], options: &ReadOptions) -> Result<Vec<Row>, String> {
    let mut rows = CsvRows::new(data, options)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next_row() {
        out.push(r?);
    }
    Ok(out)
}

fn consent_options() -> ReadOptions {
    ReadOptions {
        defaults: RowDefaults {
            source: "import:test.csv".into(),
            notice_version: "2026-01".into(),
        },
        ..ReadOptions::default()
    }
}

#[test]
fn french_headers_map_to_fields() {
    let h = headers(&[
        "Courriel",
        "Téléphone",
        "Prénom",
        "NOM",
        "Adresse",
        "Code postal",
        "Ville",
        "Pays",
        "Étiquettes",
        "custom_Bureau de vote",
        "consent:newsletter",
        "Consent:SMS-Mobilisation:SMS",
    ]);
    let m = Mapping::new(&h, &MappingOptions::default()).unwrap();
    assert_eq!(
        m.targets(),
        &[
            Target::Email,
            Target::Phone,
            Target::GivenName,
            Target::FamilyName,
            Target::Line1,
            Target::Postcode,
            Target::City,
            Target::Country,
            Target::Tags,
            Target::Custom("bureau_de_vote".into()),
            Target::Consent {
                purpose: "newsletter".into(),
                channel: String::new()
            },
            Target::Consent {
                purpose: "sms-mobilisation".into(),
                channel: "sms".into()
            },
        ]
    );
}

#[test]
fn english_aliases_and_field_paths() {
    for (h, t) in [
        ("E-mail", Target::Email),
        ("first_name", Target::GivenName),
        ("Last Name", Target::FamilyName),
        ("mobile", Target::Phone),
        ("portable", Target::Phone),
        ("address.postcode", Target::Postcode),
        ("CP", Target::Postcode),
        ("commune", Target::City),
        ("line2", Target::Line2),
        ("Source", Target::Source),
        ("custom.shirt-size", Target::Custom("shirt_size".into())),
    ] {
        assert_eq!(default_target(h), Some(t), "{h}");
    }
    assert_eq!(default_target("favourite colour"), None);
    assert_eq!(default_target("custom_"), None);
    assert_eq!(default_target("consent:"), None);
    assert_eq!(default_target("consent:a:b:c"), None);
}

#[test]
fn decomposed_accents_fold_too() {
    assert_eq!(normalize_header("Pre\u{301}nom"), "prenom");
    assert_eq!(normalize_header("  Code  Postal "), "code_postal");
    assert_eq!(normalize_header("\u{feff}Email"), "email");
}

#[test]
fn unknown_columns_are_listed_unless_ignored() {
    let h = headers(&["email", "shoe size", "", "hat"]);
    let e = Mapping::new(&h, &MappingOptions::default()).unwrap_err();
    assert!(e.contains("\"shoe size\""), "{e}");
    assert!(e.contains("#3 (no name)"), "{e}");
    assert!(e.contains("\"hat\""), "{e}");
    let m = Mapping::new(
        &h,
        &MappingOptions {
            ignore_unknown: true,
            ..MappingOptions::default()
        },
    )
    .unwrap();
    assert_eq!(m.targets()[1], Target::Ignore);
}

#[test]
fn map_overrides_and_validates() {
    let h = headers(&["Mail perso", "Tel", "Mail pro"]);
    let m = Mapping::new(
        &h,
        &MappingOptions {
            overrides: vec![
                ("mail perso".into(), "email".into()),
                ("Mail pro".into(), "custom_work_email".into()),
            ],
            ..MappingOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        m.targets(),
        &[
            Target::Email,
            Target::Phone,
            Target::Custom("work_email".into())
        ]
    );
    let e = Mapping::new(
        &h,
        &MappingOptions {
            overrides: vec![("missing".into(), "email".into())],
            ignore_unknown: true,
            ..MappingOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("no column \"missing\""), "{e}");
    let e = Mapping::new(
        &h,
        &MappingOptions {
            overrides: vec![("Tel".into(), "shoe".into())],
            ignore_unknown: true,
            ..MappingOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn duplicate_targets_and_missing_contact_are_refused() {
    let e = Mapping::new(&headers(&["email", "courriel"]), &MappingOptions::default()).unwrap_err();
    assert!(e.contains("both map to email"), "{e}");
    let e = Mapping::new(&headers(&["prenom", "nom"]), &MappingOptions::default()).unwrap_err();
    assert!(e.contains("no column holds an email or a phone"), "{e}");
    // Several tag columns are fine.
    Mapping::new(
        &headers(&["email", "tags", "tag"]),
        &MappingOptions::default(),
    )
    .unwrap();
}

#[test]
fn rows_become_supporters() {
    let data = "email;prénom;tags;cp;consent:newsletter;consent:sms-mobilisation;custom_ville_natale\n\
                a@b.fr;Anne;militant|quartier-nord; paris-5 ;Oui;0;Lyon\n\
                c@d.fr;;;;;;\n";
    let rows = read_all(data.as_bytes(), &consent_options()).unwrap();
    assert_eq!(rows.len(), 2);
    let Row::Parsed { row, supporter } = &rows[0] else {
        panic!("{:?}", rows[0])
    };
    assert_eq!(*row, 1);
    assert_eq!(supporter.email, "a@b.fr");
    assert_eq!(supporter.given_name, "Anne");
    assert_eq!(supporter.tags, vec!["militant", "quartier-nord"]);
    assert_eq!(supporter.address.as_ref().unwrap().postcode, "paris-5");
    assert_eq!(supporter.custom.get("ville_natale").unwrap(), "Lyon");
    assert_eq!(supporter.source, "import:test.csv");
    assert_eq!(supporter.consents.len(), 1);
    assert_eq!(supporter.consents[0].purpose, "newsletter");
    assert_eq!(supporter.consents[0].source, "import");
    assert_eq!(supporter.consents[0].notice_version, "2026-01");
    let Row::Parsed { row, supporter } = &rows[1] else {
        panic!("{:?}", rows[1])
    };
    assert_eq!(*row, 2);
    assert!(supporter.address.is_none());
    assert!(supporter.tags.is_empty() && supporter.consents.is_empty());
}

#[test]
fn bad_rows_are_rejected_with_file_row_numbers() {
    let mut data = b"email,given_name,consent:newsletter\n".to_vec();
    data.extend_from_slice(b"a@b.fr,Anne,yes\n");
    data.extend_from_slice(b"b@b.fr,Too,many,fields\n");
    data.extend_from_slice(b"c@b.fr,\xff\xfe,1\n");
    data.extend_from_slice(b"d@b.fr,Dan,maybe\n");
    data.extend_from_slice(b"\"e@b.fr\",\"multi\nline\",x\n");
    data.extend_from_slice(b"f@b.fr,Fay\n");
    let rows = read_all(&data, &consent_options()).unwrap();
    let summary: Vec<(u64, bool)> = rows
        .iter()
        .map(|r| match r {
            Row::Parsed { row, .. } => (*row, true),
            Row::Rejected { row, .. } => (*row, false),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, true),
            (2, false),
            (3, false),
            (4, false),
            (5, true),
            (6, false)
        ]
    );
    let Row::Rejected { reason, .. } = &rows[1] else {
        panic!()
    };
    assert_eq!(reason, "expected 3 fields, found 4");
    let Row::Rejected { reason, .. } = &rows[2] else {
        panic!()
    };
    assert!(reason.contains("not valid UTF-8"), "{reason}");
    let Row::Rejected { reason, .. } = &rows[3] else {
        panic!()
    };
    assert!(reason.contains("\"maybe\""), "{reason}");
}

#[test]
fn consent_columns_need_a_notice_version() {
    let e = read_all(
        b"email,consent:newsletter\na@b.fr,1\n",
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("--notice-version"), "{e}");
}

#[test]
fn delimiter_is_sniffed_from_the_header_line() {
    assert_eq!(sniff_delimiter(b"email;nom;prenom\na,b,c,d,e\n"), b';');
    assert_eq!(sniff_delimiter(b"email,nom\n"), b',');
    assert_eq!(sniff_delimiter(b"email\tnom\n"), b'\t');
    assert_eq!(sniff_delimiter(b"\"a;b;c\",email\n"), b',');
    assert_eq!(sniff_delimiter(b""), b',');
    let rows = read_all(
        b"\xef\xbb\xbfEmail\tVille\na@b.fr\tParis\n",
        &ReadOptions::default(),
    )
    .unwrap();
    let Row::Parsed { supporter, .. } = &rows[0] else {
        panic!()
    };
    assert_eq!(supporter.address.as_ref().unwrap().city, "Paris");
}

#[test]
fn empty_file_is_refused() {
    assert!(read_all(b"", &ReadOptions::default()).is_err());
}

#[test]
fn server_rejections_get_file_row_numbers() {
    let mut s = ImportSummary {
        rows: 10,
        ..ImportSummary::default()
    };
    s.reject_locally(4, None, "expected 3 fields, found 2".into());
    s.add_response(
        &pb::ImportResponse {
            created: 5,
            updated: 1,
            unchanged: 1,
            rejected: vec![
                pb::RejectedRow {
                    row: 2,
                    reason: "email: not an email address".into(),
                    code: "InvalidArgument".into(),
                    field: "email".into(),
                },
                pb::RejectedRow {
                    row: 99,
                    reason: "odd".into(),
                    code: "Internal".into(),
                    field: String::new(),
                },
            ],
            // Two more the server refused without listing them.
            rejected_total: 4,
        },
        // Stream positions 1..=8 carried file rows 1, 2, 3, 5, 6, 7, 8, 9.
        &[1, 2, 3, 5, 6, 7, 8, 9],
    );
    s.sort();
    assert_eq!(
        s.rejected.iter().map(|r| r.row).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    assert!(s.rejected[0].reason.starts_with("stream position 99"));
    let text = s.lines("f.csv");
    assert!(text.starts_with("f.csv: 10 rows: 5 created, 1 updated, 1 unchanged, 5 rejected"));
    assert!(text.contains("and 2 more rejected rows not listed"));
    assert_eq!(s.json("f.csv")["rejected_unlisted"], 2);
    assert!(text.contains("row 2: email: not an email address [InvalidArgument]"));
    assert_eq!(s.json("f.csv")["rejected"][1]["row"], 2);
}

const KNOWN: &[(&str, &str)] = &[
    ("email", "email"),
    ("téléphone", "phone"),
    ("prénom", "given_name"),
    ("nom", "family_name"),
    ("adresse", "line1"),
    ("line2", "line2"),
    ("code_postal", "postcode"),
    ("ville", "city"),
    ("pays", "country"),
    ("tags", "tags"),
    ("source", "source"),
    ("custom_bureau", "custom_bureau"),
    ("consent:newsletter:email", "consent:newsletter:email"),
];

fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, up)| {
            if *up {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    /// Any order and casing of known headers maps each column to the same field, and a
    /// row built by field yields the same supporter whatever the order.
    #[test]
    fn header_order_and_case_do_not_matter(
        order in Just((0..KNOWN.len()).collect::<Vec<_>>()).prop_shuffle(),
        mask in proptest::collection::vec(any::<bool>(), 1..16),
        pad in "[ ]{0,2}",
    ) {
        let hs: Vec<String> = order
            .iter()
            .map(|&i| format!("{pad}{}{pad}", recase(KNOWN[i].0, &mask)))
            .collect();
        let m = Mapping::new(&hs, &MappingOptions::default()).unwrap();
        for (col, &i) in order.iter().enumerate() {
            prop_assert_eq!(m.targets()[col].name(), KNOWN[i].1);
        }
        let cells: Vec<String> = order.iter().map(|&i| match KNOWN[i].1 {
            "email" => "x@y.fr".to_owned(),
            "tags" => "a;b".to_owned(),
            f if f.starts_with("consent") => "oui".to_owned(),
            f => format!("v-{f}"),
        }).collect();
        let cell_refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        let defaults = RowDefaults { source: "d".into(), notice_version: "n1".into() };
        let got = m.supporter(&cell_refs, &defaults).unwrap();
        let canonical_headers: Vec<String> = KNOWN.iter().map(|(h, _)| (*h).to_owned()).collect();
        let canonical = Mapping::new(&canonical_headers, &MappingOptions::default()).unwrap();
        let mut by_field = vec![""; KNOWN.len()];
        for (col, &i) in order.iter().enumerate() {
            by_field[i] = cell_refs[col];
        }
        prop_assert_eq!(got, canonical.supporter(&by_field, &defaults).unwrap());
    }

    /// Arbitrary cell text never panics: each row is a supporter or a rejection.
    #[test]
    fn arbitrary_cells_never_panic(cells in proptest::collection::vec(".{0,24}", KNOWN.len())) {
        let hs: Vec<String> = KNOWN.iter().map(|(h, _)| (*h).to_owned()).collect();
        let m = Mapping::new(&hs, &MappingOptions::default()).unwrap();
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        let _ = m.supporter(&refs, &RowDefaults::default());
    }

    /// Arbitrary bytes as a file never panic either.
    #[test]
    fn arbitrary_files_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = b"email,tags,consent:newsletter,custom_x\n".to_vec();
        data.extend_from_slice(&body);
        let options = ReadOptions {
            defaults: RowDefaults { source: String::new(), notice_version: "v".into() },
            ..ReadOptions::default()
        };
        if let Ok(mut rows) = CsvRows::new(&data[..], &options) {
            while let Some(r) = rows.next_row() {
                prop_assert!(r.is_ok());
            }
        }
    }
}

/// NationBuilder's people export header (a realistic subset of its columns, in its order).
const NATIONBUILDER_HEADER: &str = "nationbuilder_id,external_id,first_name,middle_name,\
    last_name,email,email_opt_in,phone_number,mobile_number,mobile_opt_in,tag_list,address1,\
    address2,city,zip,country_code,sex,support_level,is_volunteer,created_at";

fn nationbuilder_options() -> ReadOptions {
    ReadOptions {
        mapping: MappingOptions {
            preset: Some(Preset::Nationbuilder),
            purpose: "membership".into(),
            ..MappingOptions::default()
        },
        defaults: RowDefaults {
            source: "import:nb.csv".into(),
            notice_version: "2026-03".into(),
        },
        delimiter: None,
    }
}

#[test]
fn nationbuilder_columns_map_and_the_rest_is_counted() {
    let data = format!(
        "{NATIONBUILDER_HEADER}\n\
         1001,crm-7,Anne,Marie,Martin,anne@exemple.fr,true,01 23 45 67 89,06 12 34 56 78,false,\
         \"Bénévole, porte à porte\",1 rue de la Paix,Bât. B,Paris,75002,FR,F,1,true,2024-01-02\n\
         1002,,Paul,,Durand,paul@exemple.fr,false,01 98 76 54 32,,true,,,,,,,M,,,2024-01-03\n\
         1003,,Léa,,Moreau,lea@exemple.fr,Y,06 12 34 56 79,+33 6 12 34 56 79,N,élue,,,,,,,,,\n"
    );
    let mut rows = CsvRows::new(data.as_bytes(), &nationbuilder_options()).unwrap();
    let mut parsed = Vec::new();
    while let Some(r) = rows.next_row() {
        let Row::Parsed { supporter, .. } = r.unwrap() else {
            panic!("every row parses")
        };
        parsed.push(*supporter);
    }
    let anne = &parsed[0];
    assert_eq!(
        (
            anne.given_name.as_str(),
            anne.family_name.as_str(),
            anne.email.as_str()
        ),
        ("Anne", "Martin", "anne@exemple.fr")
    );
    // The mobile is the phone; the landline is kept beside it.
    assert_eq!(anne.phone, "06 12 34 56 78");
    assert_eq!(anne.custom["phone_number"], "01 23 45 67 89");
    assert_eq!(anne.custom["nationbuilder_id"], "1001");
    assert_eq!(anne.custom["external_id"], "crm-7");
    assert_eq!(anne.tags, vec!["Bénévole", "porte-à-porte"]);
    let address = anne.address.clone().unwrap();
    assert_eq!(
        (
            address.line1.as_str(),
            address.line2.as_str(),
            address.city.as_str(),
            address.postcode.as_str(),
            address.country.as_str()
        ),
        ("1 rue de la Paix", "Bât. B", "Paris", "75002", "FR")
    );
    let consents = |s: &pb::Supporter| -> Vec<(String, String)> {
        s.consents
            .iter()
            .map(|c| (c.purpose.clone(), c.channel.clone()))
            .collect()
    };
    assert_eq!(
        consents(anne),
        vec![("membership".to_owned(), "email".to_owned())]
    );
    assert_eq!(anne.consents[0].notice_version, "2026-03");
    // No mobile: the landline is the phone, nothing kept twice.
    let paul = &parsed[1];
    assert_eq!(paul.phone, "01 98 76 54 32");
    assert!(!paul.custom.contains_key("phone_number"));
    assert_eq!(
        consents(paul),
        vec![("membership".to_owned(), "sms".to_owned())]
    );
    // The same number twice, written two ways: kept once.
    let lea = &parsed[2];
    assert_eq!(lea.phone, "+33 6 12 34 56 79");
    assert!(!lea.custom.contains_key("phone_number"), "{lea:?}");
    assert_eq!(
        consents(lea),
        vec![("membership".to_owned(), "email".to_owned())]
    );
    // What has no place is listed, with its non-empty cells.
    let unplaced: Vec<(String, u64)> = rows
        .unplaced()
        .into_iter()
        .map(|u| (u.column, u.cells))
        .collect();
    assert_eq!(
        unplaced,
        vec![
            ("\"middle_name\"".to_owned(), 1),
            ("\"sex\"".to_owned(), 2),
            ("\"support_level\"".to_owned(), 1),
            ("\"is_volunteer\"".to_owned(), 1),
            ("\"created_at\"".to_owned(), 2),
        ]
    );
}

#[test]
fn without_a_preset_nationbuilder_columns_are_unknown() {
    let e = CsvRows::new(
        format!("{NATIONBUILDER_HEADER}\n").as_bytes(),
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("\"nationbuilder_id\""), "{e}");
    assert!(e.contains("--ignore-unknown"), "{e}");
}

#[test]
fn ignored_unknown_columns_are_reported_not_dropped_silently() {
    let options = ReadOptions {
        mapping: MappingOptions {
            ignore_unknown: true,
            ..MappingOptions::default()
        },
        ..ReadOptions::default()
    };
    let mut rows = CsvRows::new(
        b"email,pointure,skip\na@b.fr,38,\nc@d.fr,,x\ne@f.fr,41,\n".as_slice(),
        &options,
    )
    .unwrap();
    while rows.next_row().is_some() {}
    let mut summary = ImportSummary {
        unplaced: rows.unplaced(),
        ..ImportSummary::default()
    };
    summary.rows = 3;
    assert_eq!(
        summary.unplaced,
        vec![
            Unplaced {
                column: "\"pointure\"".into(),
                cells: 2
            },
            Unplaced {
                column: "\"skip\"".into(),
                cells: 1
            }
        ]
    );
    let text = summary.lines("f.csv");
    assert!(
        text.contains("2 columns not imported") && text.contains("\"pointure\": 2 non-empty"),
        "{text}"
    );
    assert_eq!(summary.json("f.csv")["unplaced"][0]["cells"], 2);
}

#[test]
fn server_refusals_name_the_column() {
    let h = headers(&[
        "Courriel",
        "Téléphone",
        "Code postal",
        "Étiquettes",
        "tags",
        "custom_bureau",
        "consent:newsletter",
    ]);
    let m = Mapping::new(&h, &MappingOptions::default()).unwrap();
    assert_eq!(m.columns_of("phone"), vec!["\"Téléphone\""]);
    assert_eq!(m.columns_of("address.postcode"), vec!["\"Code postal\""]);
    assert_eq!(m.columns_of("tags"), vec!["\"Étiquettes\"", "\"tags\""]);
    assert_eq!(m.columns_of("custom.bureau"), vec!["\"custom_bureau\""]);
    assert_eq!(m.columns_of("custom"), vec!["\"custom_bureau\""]);
    assert_eq!(
        m.columns_of("consents.purpose"),
        vec!["\"consent:newsletter\""]
    );
    assert!(m.columns_of("given_name").is_empty());

    let mut s = ImportSummary {
        rows: 3,
        ..ImportSummary::default()
    };
    s.add_response(
        &pb::ImportResponse {
            created: 1,
            rejected: vec![
                pb::RejectedRow {
                    row: 1,
                    reason: "phone: is not a valid number for FR (unallocated range)".into(),
                    code: "InvalidArgument".into(),
                    field: "phone".into(),
                },
                pb::RejectedRow {
                    row: 2,
                    reason: "tags: must be at most 64 characters long".into(),
                    code: "InvalidArgument".into(),
                    field: "tags".into(),
                },
            ],
            rejected_total: 2,
            ..pb::ImportResponse::default()
        },
        &[1, 3],
    );
    s.name_columns(&m);
    let text = s.lines("f.csv");
    assert!(
        text.contains(
            "row 1, column \"Téléphone\": phone: is not a valid number for FR (unallocated \
             range) [InvalidArgument]"
        ),
        "{text}"
    );
    assert!(
        text.contains("row 3, column \"Étiquettes\" or \"tags\": tags:"),
        "{text}"
    );
    assert_eq!(s.json("f.csv")["rejected"][0]["column"], "\"Téléphone\"");
    assert_eq!(s.json("f.csv")["rejected"][0]["field"], "phone");
}

#[test]
fn a_bad_consent_cell_names_its_column() {
    let rows = read_all(
        b"email,consent:newsletter\na@b.fr,peut-etre\n",
        &consent_options(),
    )
    .unwrap();
    assert_eq!(
        rows[0],
        Row::Rejected {
            row: 1,
            column: Some("\"consent:newsletter\"".into()),
            reason: "\"peut-etre\" is neither yes (1, yes, y, oui, o, true, vrai, x) nor no \
                     (empty, 0, no, n, non, false, faux)"
                .into(),
        }
    );
}

#[test]
fn consent_values_are_those_documented() {
    for yes in YES {
        assert_eq!(truthy(&yes.to_uppercase()), Some(true), "{yes}");
    }
    for no in NO {
        assert_eq!(truthy(no), Some(false), "{no}");
    }
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/import.md")).unwrap();
    let listed = |list: &[&str]| {
        list.iter()
            .filter(|v| !v.is_empty())
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(
        doc.contains(&format!("yes: {}", listed(YES))),
        "docs/import.md: yes values"
    );
    assert!(
        doc.contains(&format!("no: empty, {}", listed(NO))),
        "docs/import.md: no values"
    );
}
