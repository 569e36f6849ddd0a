use super::*;
use secrecy::ExposeSecret;

const PASSWORD: &str = "S3cr3t-Pl4nt";

// -----------------------------------------------------------------------
// Accepted MySQL inputs
// -----------------------------------------------------------------------

struct MysqlExpect {
    host: &'static str,
    port: u16,
    user: &'static str,
    password: Option<&'static str>,
    database: &'static str,
    ssl_mode: SslMode,
    ssl_ca: Option<&'static str>,
    ssl_cert: Option<&'static str>,
    ssl_key: Option<&'static str>,
    connect_timeout: Option<u64>,
}

const BASE: MysqlExpect = MysqlExpect {
    host: "db.example.com",
    port: 3306,
    user: "ally",
    password: Some(PASSWORD),
    database: "ally",
    ssl_mode: SslMode::Preferred,
    ssl_ca: None,
    ssl_cert: None,
    ssl_key: None,
    connect_timeout: None,
};

struct MysqlCase {
    name: &'static str,
    input: &'static str,
    expect: MysqlExpect,
}

fn check_mysql_cases(cases: &[MysqlCase]) {
    for case in cases {
        let name = case.name;
        let parsed = DatabaseUrl::parse(case.input)
            .unwrap_or_else(|error| panic!("{name}: rejected: {error}"));
        let DatabaseUrl::Mysql(target) = parsed else {
            panic!("{name}: parsed as SQLite");
        };
        let expect = &case.expect;
        assert_eq!(target.host, expect.host, "{name}: host");
        assert_eq!(target.port, expect.port, "{name}: port");
        assert_eq!(target.user, expect.user, "{name}: user");
        assert_eq!(
            target.password.as_ref().map(|p| p.expose_secret()),
            expect.password,
            "{name}: password"
        );
        assert_eq!(target.database, expect.database, "{name}: database");
        assert_eq!(target.ssl_mode, expect.ssl_mode, "{name}: ssl_mode");
        assert_eq!(
            target.ssl_ca,
            expect.ssl_ca.map(PathBuf::from),
            "{name}: ssl_ca"
        );
        assert_eq!(
            target.ssl_cert,
            expect.ssl_cert.map(PathBuf::from),
            "{name}: ssl_cert"
        );
        assert_eq!(
            target.ssl_key,
            expect.ssl_key.map(PathBuf::from),
            "{name}: ssl_key"
        );
        assert_eq!(
            target.connect_timeout,
            expect.connect_timeout.map(Duration::from_secs),
            "{name}: connect_timeout"
        );
    }
}

#[test]
fn dotnet_accepts() {
    check_mysql_cases(&[
        MysqlCase {
            name: "dotnet_basic",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_host_synonym",
            input: "Host=db.example.com;Uid=ally;Pwd=S3cr3t-Pl4nt;Initial Catalog=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_data_source",
            input: "Data Source=db.example.com;UserID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_datasource",
            input: "DataSource=db.example.com;User Id=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_address",
            input: "Address=db.example.com;Username=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_addr",
            input: "Addr=db.example.com;User name=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_network_address",
            input: "Network Address=db.example.com;User=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_underscore_key",
            input: "server=db.example.com;user_id=ally;password=S3cr3t-Pl4nt;database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_mixed_case",
            input: "SERVER=db.example.com;uSeR iD=ally;PaSsWoRd=S3cr3t-Pl4nt;DATABASE=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_quoted_semicolon",
            input: "Server=db.example.com;User ID=ally;Password='a;b=c';Database=ally",
            expect: MysqlExpect {
                password: Some("a;b=c"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_doubled_single_quote",
            input: "Server=db.example.com;User ID=ally;Password='it''s;x';Database=ally",
            expect: MysqlExpect {
                password: Some("it's;x"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_doubled_double_quote",
            input: r#"Server=db.example.com;User ID=ally;Password="say ""hi"";=";Database=ally"#,
            expect: MysqlExpect {
                password: Some(r#"say "hi";="#),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_other_quote_literal",
            input: r#"Server=db.example.com;User ID=ally;Password='a"b';Database="x'y""#,
            expect: MysqlExpect {
                password: Some(r#"a"b"#),
                database: "x'y",
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_whitespace_everywhere",
            input: "  Server = db.example.com ;\tUser ID =  ally ; Password = ' pw ' ; Database = my db ;; ",
            expect: MysqlExpect {
                password: Some(" pw "),
                database: "my db",
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_unquoted_equals",
            input: "Server=db.example.com;User ID=ally;Password=a=b==;Database=ally",
            expect: MysqlExpect {
                password: Some("a=b=="),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_raw_reserved_password",
            input: "Server=db.example.com;User ID=ally;Password=p@ss:w/rd?#%&'\";Database=ally",
            expect: MysqlExpect {
                password: Some("p@ss:w/rd?#%&'\""),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_quoted_reserved_password",
            input: "Server=db.example.com;User ID=ally;Password='p@ss:w/rd?#%&=;''';Database=ally",
            expect: MysqlExpect {
                password: Some("p@ss:w/rd?#%&=;'"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_no_password",
            input: "Server=db.example.com;User ID=ally;Database=ally",
            expect: MysqlExpect {
                password: None,
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_empty_password",
            input: "Server=db.example.com;User ID=ally;Password=;Database=ally",
            expect: MysqlExpect {
                password: None,
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_port",
            input: "Server=db.example.com;Port=3307;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect { port: 3307, ..BASE },
        },
        MysqlCase {
            name: "dotnet_port_bounds",
            input: "Server=db.example.com;Port= 65535 ;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect {
                port: 65535,
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_port_one",
            input: "Server=db.example.com;Port=1;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect { port: 1, ..BASE },
        },
        MysqlCase {
            name: "dotnet_ipv4",
            input: "Server=192.0.2.10;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect {
                host: "192.0.2.10",
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_bare_ipv6",
            input: "Server=::1;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect {
                host: "::1",
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_bare_ipv6_link_local",
            input: "Server=fe80::1;Port=3310;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect {
                host: "fe80::1",
                port: 3310,
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_bracketed_ipv6",
            input: "Server=[2001:db8::5];User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: MysqlExpect {
                host: "2001:db8::5",
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_quoted_server",
            input: "Server=' db.example.com ';User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_tls_files",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    SslMode=VerifyFull;SslCa=/etc/ally/ca.pem;SslCert=/etc/ally/client.pem;\
                    SslKey=/etc/ally/client.key",
            expect: MysqlExpect {
                ssl_mode: SslMode::VerifyFull,
                ssl_ca: Some("/etc/ally/ca.pem"),
                ssl_cert: Some("/etc/ally/client.pem"),
                ssl_key: Some("/etc/ally/client.key"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_tls_file_synonyms",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    Ssl-Ca='C:\\certs\\ca;1.pem';Ssl-Cert=c.pem;Ssl-Key=k.pem",
            expect: MysqlExpect {
                ssl_ca: Some("C:\\certs\\ca;1.pem"),
                ssl_cert: Some("c.pem"),
                ssl_key: Some("k.pem"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_ca_certificate_file",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    CACertificateFile=ca.pem;SSL Cert=c.pem;SSL Key=k.pem",
            expect: MysqlExpect {
                ssl_ca: Some("ca.pem"),
                ssl_cert: Some("c.pem"),
                ssl_key: Some("k.pem"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_ca_certificate_file_spaced",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    CA Certificate File=ca.pem",
            expect: MysqlExpect {
                ssl_ca: Some("ca.pem"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_ssl_ca_spaced",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    SSL CA=ca.pem",
            expect: MysqlExpect {
                ssl_ca: Some("ca.pem"),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_connect_timeout",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    Connect Timeout=30",
            expect: MysqlExpect {
                connect_timeout: Some(30),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_connection_timeout",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    Connection Timeout=0",
            expect: MysqlExpect {
                connect_timeout: Some(0),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_connecttimeout",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    ConnectTimeout=4294967295",
            expect: MysqlExpect {
                connect_timeout: Some(4_294_967_295),
                ..BASE
            },
        },
        MysqlCase {
            name: "dotnet_character_set",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    Character Set=utf8mb4",
            expect: BASE,
        },
        MysqlCase {
            name: "dotnet_charset",
            input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                    CharSet=UTF8MB4",
            expect: BASE,
        },
    ]);
}

#[test]
fn dotnet_ssl_mode_spellings() {
    let spellings = [
        ("SslMode", "None", SslMode::None),
        ("Ssl Mode", "Disabled", SslMode::None),
        ("SSL Mode", "DISABLED", SslMode::None),
        ("Ssl-Mode", "Preferred", SslMode::Preferred),
        ("SSL MODE", "preferred", SslMode::Preferred),
        ("ssl_mode", "Required", SslMode::Required),
        ("sslmode", "REQUIRED", SslMode::Required),
        ("SslMode", "VerifyCA", SslMode::VerifyCa),
        ("SslMode", "VERIFY_CA", SslMode::VerifyCa),
        ("SslMode", "verify-ca", SslMode::VerifyCa),
        ("SslMode", "VerifyFull", SslMode::VerifyFull),
        ("SslMode", "VERIFY_IDENTITY", SslMode::VerifyFull),
        ("SslMode", " Verify Full ", SslMode::VerifyFull),
    ];
    for (key, value, expected) in spellings {
        let input = format!("Server=h;User ID=u;Database=d;{key}={value}");
        let Ok(DatabaseUrl::Mysql(target)) = DatabaseUrl::parse(&input) else {
            panic!("{input}: not parsed as MySQL");
        };
        assert_eq!(target.ssl_mode, expected, "{input}");
    }
}

#[test]
fn url_accepts() {
    check_mysql_cases(&[
        MysqlCase {
            name: "url_basic",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
            expect: BASE,
        },
        MysqlCase {
            name: "url_upper_scheme",
            input: "  MySQL://ally:S3cr3t-Pl4nt@db.example.com/ally  ",
            expect: BASE,
        },
        MysqlCase {
            name: "url_mariadb",
            input: "mariadb://ally:S3cr3t-Pl4nt@db.example.com:3307/ally",
            expect: MysqlExpect { port: 3307, ..BASE },
        },
        MysqlCase {
            name: "url_sqlalchemy_aiomysql",
            input: "mysql+aiomysql://ally:S3cr3t-Pl4nt@db.example.com/ally?charset=utf8mb4",
            expect: BASE,
        },
        MysqlCase {
            name: "url_sqlalchemy_pymysql",
            input: "mysql+pymysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
            expect: BASE,
        },
        MysqlCase {
            name: "url_sqlalchemy_asyncmy",
            input: "mysql+asyncmy://ally:S3cr3t-Pl4nt@db.example.com/ally",
            expect: BASE,
        },
        MysqlCase {
            name: "url_sqlalchemy_mysqldb",
            input: "MYSQL+MYSQLDB://ally:S3cr3t-Pl4nt@db.example.com/ally",
            expect: BASE,
        },
        MysqlCase {
            name: "url_sqlalchemy_mariadbconnector",
            input: "mariadb+mariadbconnector://ally:S3cr3t-Pl4nt@db.example.com/ally",
            expect: BASE,
        },
        MysqlCase {
            name: "url_encoded_password",
            input: "mysql://ally:p%40ss%3Aw%2Frd%3F%23%25%26%3D@db.example.com/ally",
            expect: MysqlExpect {
                password: Some("p@ss:w/rd?#%&="),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_raw_at_in_password",
            input: "mysql://ally:p@ss/w?r#d@db.example.com/ally",
            expect: MysqlExpect {
                password: Some("p@ss/w?r#d"),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_plus_in_password",
            input: "mysql://ally:a+b@db.example.com/ally",
            expect: MysqlExpect {
                password: Some("a+b"),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_encoded_user_database",
            input: "mysql://al%20ly:S3cr3t-Pl4nt@db.example.com/my%2Fdb",
            expect: MysqlExpect {
                user: "al ly",
                database: "my/db",
                ..BASE
            },
        },
        MysqlCase {
            name: "url_no_password",
            input: "mysql://ally@db.example.com/ally",
            expect: MysqlExpect {
                password: None,
                ..BASE
            },
        },
        MysqlCase {
            name: "url_empty_password",
            input: "mysql://ally:@db.example.com/ally",
            expect: MysqlExpect {
                password: None,
                ..BASE
            },
        },
        MysqlCase {
            name: "url_ipv6_port",
            input: "mysql://ally:S3cr3t-Pl4nt@[::1]:3307/ally",
            expect: MysqlExpect {
                host: "::1",
                port: 3307,
                ..BASE
            },
        },
        MysqlCase {
            name: "url_ipv6_default_port",
            input: "mysql://ally:S3cr3t-Pl4nt@[fe80::1]/ally",
            expect: MysqlExpect {
                host: "fe80::1",
                ..BASE
            },
        },
        MysqlCase {
            name: "url_cli_ssl_options",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl-mode=VERIFY_IDENTITY\
                    &ssl-ca=/etc/ally/ca.pem&ssl-cert=/etc/c.pem&ssl-key=/etc/k.pem",
            expect: MysqlExpect {
                ssl_mode: SslMode::VerifyFull,
                ssl_ca: Some("/etc/ally/ca.pem"),
                ssl_cert: Some("/etc/c.pem"),
                ssl_key: Some("/etc/k.pem"),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_dotnet_query_names",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?SslMode=VerifyCA\
                    &SslCa=ca.pem&Connect%20Timeout=5&",
            expect: MysqlExpect {
                ssl_mode: SslMode::VerifyCa,
                ssl_ca: Some("ca.pem"),
                connect_timeout: Some(5),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_sqlalchemy_query_names",
            input: "mysql+aiomysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl_ca=%2Fca%2B1.pem\
                    &connect_timeout=10&ssl_mode=disabled",
            expect: MysqlExpect {
                ssl_mode: SslMode::None,
                ssl_ca: Some("/ca+1.pem"),
                connect_timeout: Some(10),
                ..BASE
            },
        },
        MysqlCase {
            name: "url_query_plus_is_space",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode=verify+full",
            expect: MysqlExpect {
                ssl_mode: SslMode::VerifyFull,
                ..BASE
            },
        },
        MysqlCase {
            name: "url_empty_query",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?",
            expect: BASE,
        },
    ]);
}

// -----------------------------------------------------------------------
// Accepted SQLite inputs
// -----------------------------------------------------------------------

#[test]
fn sqlite_accepts() {
    let cases: [(&str, SqlitePath); 13] = [
        ("sqlite::memory:", SqlitePath::Memory),
        (" SQLite::memory: ", SqlitePath::Memory),
        ("sqlite::memory:?", SqlitePath::Memory),
        ("sqlite://:memory:", SqlitePath::Memory),
        ("sqlite://data/ally.db", file("data/ally.db")),
        ("sqlite:///var/lib/ally.db", file("/var/lib/ally.db")),
        ("SQLITE://ally.db?", file("ally.db")),
        ("sqlite://data/my%20db%3F.db", file("data/my db?.db")),
        ("sqlite+aiosqlite:///rel.db", file("rel.db")),
        ("sqlite+aiosqlite:////abs/x.db", file("/abs/x.db")),
        ("sqlite+pysqlite:///data/ally.db", file("data/ally.db")),
        ("sqlite+pysqlite:///:memory:", SqlitePath::Memory),
        ("SQLite+AioSqlite:///x%2By.db", file("x+y.db")),
    ];
    for (input, expected) in cases {
        let Ok(DatabaseUrl::Sqlite(target)) = DatabaseUrl::parse(input) else {
            panic!("{input}: not parsed as SQLite");
        };
        assert_eq!(target.path, expected, "{input}");
    }
}

fn file(path: &str) -> SqlitePath {
    SqlitePath::File(PathBuf::from(path))
}

// -----------------------------------------------------------------------
// Rejected inputs
// -----------------------------------------------------------------------

struct RejectCase {
    name: &'static str,
    input: &'static str,
    key: Option<&'static str>,
    /// Text the message must contain.
    mentions: &'static str,
    /// Text that neither `Display` nor `Debug` may contain, besides `PASSWORD`.
    hidden: &'static [&'static str],
}

const GOOD_DOTNET: &str = "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally";

fn check_reject_cases(cases: &[RejectCase]) {
    for case in cases {
        let name = case.name;
        let error = match DatabaseUrl::parse(case.input) {
            Ok(parsed) => panic!("{name}: accepted as {}", parsed.redacted()),
            Err(error) => error,
        };
        let display = error.to_string();
        let debug = format!("{error:?}");
        assert_eq!(error.key(), case.key, "{name}: key in {display}");
        assert!(
            display.starts_with("invalid DATABASE_URL: "),
            "{name}: {display}"
        );
        assert!(
            display.contains(case.mentions),
            "{name}: `{}` missing from {display}",
            case.mentions
        );
        for hidden in case.hidden.iter().chain([&PASSWORD]) {
            assert!(!display.contains(hidden), "{name}: Display shows {hidden}");
            assert!(!debug.contains(hidden), "{name}: Debug shows {hidden}");
        }
    }
}

#[test]
fn dotnet_rejects() {
    check_reject_cases(&[
        RejectCase {
            name: "dotnet_empty",
            input: "   ",
            key: None,
            mentions: "empty",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_only_separators",
            input: " ; ;; ",
            key: None,
            mentions: "no settings",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_unterminated_password",
            input: "Server=h;User ID=u;Database=d;Password='S3cr3t-Pl4nt",
            key: Some("Password"),
            mentions: "no closing ' quote",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_unterminated_server",
            input: "Server=\"h;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "no closing \" quote",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_text_after_quote",
            input: "Server=h;User ID=u;Database=d;Password='S3cr3t-Pl4nt'junk99",
            key: Some("Password"),
            mentions: "after the closing ' quote",
            hidden: &["junk99"],
        },
        RejectCase {
            name: "dotnet_repeated_key",
            input: "Server=a;SERVER=b;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("SERVER"),
            mentions: "the earlier key `Server` already sets",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_repeated_synonym",
            input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Host=b",
            key: Some("Host"),
            mentions: "the earlier key `Server` already sets the same option",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_repeated_ssl_mode",
            input: "SslMode=VerifyFull;Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Ssl Mode=None",
            key: Some("Ssl Mode"),
            mentions: "silently replace",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_repeated_password",
            input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Pwd=S3cr3t-Pl4nt",
            key: Some("Pwd"),
            mentions: "earlier key `Password`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_unknown_key",
            input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Pooling=false",
            key: Some("Pooling"),
            mentions: "unknown key",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_certificate_file",
            input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;CertificateFile=c.pfx",
            key: Some("CertificateFile"),
            mentions: "PKCS #12",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_several_hosts",
            input: "Server=db1,db2;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "single server",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_empty_host",
            input: "Server=;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "host is empty",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_blank_quoted_host",
            input: "Host='  ';User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Host"),
            mentions: "host is empty",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_host_with_port",
            input: "Server=db:3306;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "Port key",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_bracketed_host_with_port",
            input: "Server=[::1]:3306;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "Port key",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_bad_ipv6",
            input: "Server=[db.example.com];User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "IPv6",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_host_bad_character",
            input: "Server=db example;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "not a valid host name",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_unix_socket",
            input: "Server=/var/run/mysqld/mysqld.sock;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "Unix socket",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_port_not_number",
            input: "Server=h;Port=abc;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Port"),
            mentions: "port must be a number from 1 to 65535, got `abc`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_port_zero",
            input: "Server=h;port=0;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("port"),
            mentions: "got `0`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_port_too_large",
            input: "Server=h;Port=70000;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Port"),
            mentions: "got `70000`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_port_negative",
            input: "Server=h;Port=-1;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Port"),
            mentions: "got `-1`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_port_huge",
            input: "Server=h;Port=99999999999999999999;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Port"),
            mentions: "from 1 to 65535",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_unknown_ssl_mode",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslMode=Strict",
            key: Some("SslMode"),
            mentions: "VerifyFull (or VERIFY_IDENTITY)",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_missing_database",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt",
            key: Some("Database"),
            mentions: "missing database",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_empty_database",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Initial Catalog=",
            key: Some("Initial Catalog"),
            mentions: "missing database",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_missing_user",
            input: "Server=h;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("User ID"),
            mentions: "missing user",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_sqlite_data_source",
            input: "Data Source=ally.db",
            key: Some("User ID"),
            mentions: "sqlite://",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_missing_server",
            input: "User ID=u;Password=S3cr3t-Pl4nt;Database=d",
            key: Some("Server"),
            mentions: "missing server",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_missing_equals",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database;",
            key: None,
            mentions: "setting 4 has no `=`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_not_a_setting",
            input: "ally.db",
            key: None,
            mentions: "neither a URL nor a connection string",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_empty_key",
            input: "Server=h;=S3cr3t-Pl4nt",
            key: None,
            mentions: "empty key",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_latin1_charset",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;CharSet=latin1",
            key: Some("CharSet"),
            mentions: "always uses the utf8mb4",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_timeout_negative",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Connect Timeout=-5",
            key: Some("Connect Timeout"),
            mentions: "whole number of seconds",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_timeout_fraction",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;ConnectionTimeout=1.5",
            key: Some("ConnectionTimeout"),
            mentions: "got `1.5`",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_cert_without_key",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Ssl-Cert=c.pem",
            key: Some("Ssl-Cert"),
            mentions: "set SslKey",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_key_without_cert",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslKey=k.pem",
            key: Some("SslKey"),
            mentions: "set SslCert",
            hidden: &[],
        },
        RejectCase {
            name: "dotnet_empty_ca_path",
            input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslCa=",
            key: Some("SslCa"),
            mentions: "file path is empty",
            hidden: &[],
        },
    ]);
}

#[test]
fn url_rejects() {
    check_reject_cases(&[
        RejectCase {
            name: "url_unknown_scheme_postgres",
            input: "postgres://ally:S3cr3t-Pl4nt@db.example.com/ally",
            key: None,
            mentions: "unsupported URL scheme `postgres`; accepted schemes are sqlite",
            hidden: &[],
        },
        RejectCase {
            name: "url_unknown_scheme_http",
            input: "http://db.example.com/",
            key: None,
            mentions: "`http`",
            hidden: &[],
        },
        RejectCase {
            name: "url_empty_driver",
            input: "mysql+://ally:S3cr3t-Pl4nt@db.example.com/ally",
            key: None,
            mentions: "unsupported URL scheme",
            hidden: &[],
        },
        RejectCase {
            name: "url_missing_slashes",
            input: "mysql:ally:S3cr3t-Pl4nt@db.example.com/ally",
            key: None,
            mentions: "missing `//`",
            hidden: &[],
        },
        RejectCase {
            name: "url_missing_user",
            input: "mysql://db.example.com/ally",
            key: Some("user"),
            mentions: "missing user",
            hidden: &[],
        },
        RejectCase {
            name: "url_empty_user",
            input: "mysql://:S3cr3t-Pl4nt@db.example.com/ally",
            key: Some("user"),
            mentions: "user name is empty",
            hidden: &[],
        },
        RejectCase {
            name: "url_missing_database",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com",
            key: Some("database"),
            mentions: "missing database",
            hidden: &[],
        },
        RejectCase {
            name: "url_empty_database",
            input: "mariadb://ally:S3cr3t-Pl4nt@db.example.com:3306/?sslmode=Required",
            key: Some("database"),
            mentions: "missing database",
            hidden: &[],
        },
        RejectCase {
            name: "url_database_two_segments",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/a/b",
            key: Some("database"),
            mentions: "%2F",
            hidden: &[],
        },
        RejectCase {
            name: "url_missing_host",
            input: "mysql://ally:S3cr3t-Pl4nt@/ally",
            key: Some("host"),
            mentions: "missing host",
            hidden: &[],
        },
        RejectCase {
            name: "url_port_not_number",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:abc/ally",
            key: Some("port"),
            mentions: "port must be a number from 1 to 65535, got `abc`",
            hidden: &[],
        },
        RejectCase {
            name: "url_port_zero",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:0/ally",
            key: Some("port"),
            mentions: "got `0`",
            hidden: &[],
        },
        RejectCase {
            name: "url_port_too_large",
            input: "mysql://ally:S3cr3t-Pl4nt@[::1]:70000/ally",
            key: Some("port"),
            mentions: "got `70000`",
            hidden: &[],
        },
        RejectCase {
            name: "url_port_empty",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:/ally",
            key: Some("port"),
            mentions: "from 1 to 65535",
            hidden: &[],
        },
        RejectCase {
            name: "url_bare_ipv6",
            input: "mysql://ally:S3cr3t-Pl4nt@::1/ally",
            key: Some("host"),
            mentions: "brackets",
            hidden: &[],
        },
        RejectCase {
            name: "url_unclosed_ipv6",
            input: "mysql://ally:S3cr3t-Pl4nt@[::1/ally",
            key: Some("host"),
            mentions: "no closing `]`",
            hidden: &[],
        },
        RejectCase {
            name: "url_ipv6_zone",
            input: "mysql://ally:S3cr3t-Pl4nt@[fe80::1%25eth0]/ally",
            key: Some("host"),
            mentions: "zone indices",
            hidden: &[],
        },
        RejectCase {
            name: "url_unknown_query_key",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?pool_size=5",
            key: Some("pool_size"),
            mentions: "unknown query parameter",
            hidden: &[],
        },
        RejectCase {
            name: "url_repeated_query_key",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode=VerifyFull&ssl-mode=None",
            key: Some("ssl-mode"),
            mentions: "earlier key `sslmode`",
            hidden: &[],
        },
        RejectCase {
            name: "url_query_password",
            input: "mysql://ally@db.example.com/ally?password=S3cr3t-Pl4nt",
            key: Some("password"),
            mentions: "belongs in the URL itself",
            hidden: &[],
        },
        RejectCase {
            name: "url_query_without_value",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode",
            key: Some("sslmode"),
            mentions: "no `=`",
            hidden: &[],
        },
        RejectCase {
            name: "url_unknown_ssl_mode",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl-mode=STRICT",
            key: Some("ssl-mode"),
            mentions: "got `STRICT`",
            hidden: &[],
        },
        RejectCase {
            name: "url_fragment",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally#x",
            key: None,
            mentions: "%23",
            hidden: &[],
        },
        RejectCase {
            name: "url_bad_password_escape",
            input: "mysql://ally:S3cr3t-Pl4nt%zz@db.example.com/ally",
            key: Some("password"),
            mentions: "two hex digits",
            hidden: &["%zz"],
        },
        RejectCase {
            name: "url_password_not_utf8",
            input: "mysql://ally:S3cr3t-Pl4nt%FF@db.example.com/ally",
            key: Some("password"),
            mentions: "UTF-8",
            hidden: &[],
        },
        RejectCase {
            name: "url_latin1_charset",
            input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?charset=latin1",
            key: Some("charset"),
            mentions: "utf8mb4",
            hidden: &[],
        },
    ]);
}

#[test]
fn sqlite_rejects() {
    check_reject_cases(&[
        RejectCase {
            name: "sqlite_empty_path",
            input: "sqlite://",
            key: None,
            mentions: "missing SQLite file path",
            hidden: &[],
        },
        RejectCase {
            name: "sqlalchemy_empty_path",
            input: "sqlite+aiosqlite://",
            key: None,
            mentions: "missing SQLite file path",
            hidden: &[],
        },
        RejectCase {
            name: "sqlite_query",
            input: "sqlite://data/ally.db?mode=ro",
            key: None,
            mentions: "no query parameters; remove the text from `?` on",
            hidden: &[],
        },
        RejectCase {
            name: "sqlite_memory_query",
            input: "sqlite::memory:?cache=shared",
            key: None,
            mentions: "no query parameters",
            hidden: &[],
        },
        RejectCase {
            name: "sqlite_directory",
            input: "sqlite:///var/lib/",
            key: None,
            mentions: "add a file name",
            hidden: &[],
        },
        RejectCase {
            name: "sqlalchemy_host",
            input: "sqlite+aiosqlite://host/x.db",
            key: None,
            mentions: "empty host",
            hidden: &[],
        },
        RejectCase {
            name: "sqlite_without_slashes",
            input: "sqlite:data/ally.db",
            key: None,
            mentions: "sqlite://",
            hidden: &[],
        },
        RejectCase {
            name: "sqlite_fragment",
            input: "sqlite://ally#1.db",
            key: None,
            mentions: "%23",
            hidden: &[],
        },
    ]);
}

/// Inputs whose password contains the text around the rejected value, so an echo of
/// that text would show part of the password.
#[test]
fn password_neighbourhood_hidden() {
    check_reject_cases(&[
        RejectCase {
            name: "neighbourhood_port",
            input: "Server=h;Port=abc9;User ID=u;Database=d;Password=xabc9y",
            key: Some("Port"),
            mentions: "from 1 to 65535",
            hidden: &["abc9", "xabc9y"],
        },
        RejectCase {
            name: "neighbourhood_url_port",
            input: "mysql://u:70000@h:70000/db",
            key: Some("port"),
            mentions: "from 1 to 65535",
            hidden: &["70000"],
        },
        RejectCase {
            name: "neighbourhood_hosts",
            input: "Server=db1,db2;User ID=u;Database=d;Password=pw-db1,db2-pw",
            key: Some("Server"),
            mentions: "single server",
            hidden: &["db1,db2"],
        },
        RejectCase {
            name: "neighbourhood_ssl_mode",
            input: "Server=h;User ID=u;Database=d;SslMode=Bogus7;Password=Bogus7!",
            key: Some("SslMode"),
            mentions: "valid values",
            hidden: &["Bogus7"],
        },
        RejectCase {
            name: "neighbourhood_unknown_key",
            input: "Server=h;Zorro7=1;User ID=u;Database=d;Password=xZorro7x",
            key: None,
            mentions: "unknown key",
            hidden: &["Zorro7"],
        },
        RejectCase {
            name: "neighbourhood_semicolon_no_equals",
            input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99;Port=1",
            key: None,
            mentions: "has no `=`",
            hidden: &["Tail99"],
        },
        RejectCase {
            name: "neighbourhood_semicolon_unknown_key",
            input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99=zz7",
            key: None,
            mentions: "enclose it in quotes",
            hidden: &["Tail99", "zz7"],
        },
        RejectCase {
            name: "neighbourhood_semicolon_quote",
            input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99='zz7",
            key: None,
            mentions: "after the password",
            hidden: &["Tail99", "zz7"],
        },
        RejectCase {
            name: "neighbourhood_after_quote",
            input: "Server=h;User ID=u;Database=d;Password='Pl4nt'Tail99",
            key: Some("Password"),
            mentions: "closing ' quote",
            hidden: &["Pl4nt", "Tail99"],
        },
        RejectCase {
            name: "neighbourhood_unterminated",
            input: "Server=h;User ID=u;Database=d;Password=\"Pl4nt;Port=1",
            key: Some("Password"),
            mentions: "no closing \" quote",
            hidden: &["Pl4nt", "Port=1"],
        },
        RejectCase {
            name: "neighbourhood_host_name",
            input: "Server=my host;User ID=u;Database=d;Password=is my host",
            key: Some("Server"),
            mentions: "not a valid host name",
            hidden: &["my host", "y h"],
        },
        RejectCase {
            name: "neighbourhood_semicolon_port",
            input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Port=Tail99",
            key: Some("Port"),
            mentions: "from 1 to 65535",
            hidden: &["Tail99"],
        },
        RejectCase {
            name: "neighbourhood_key_is_password",
            input: "Server=h;User ID=u;Database=d;Password=Pooling;Pooling=1",
            key: None,
            mentions: "enclose it in quotes",
            hidden: &["Pooling"],
        },
    ]);
}

// -----------------------------------------------------------------------
// Redaction and formatting
// -----------------------------------------------------------------------

fn mysql_target(input: &str) -> MysqlTarget {
    match DatabaseUrl::parse(input) {
        Ok(DatabaseUrl::Mysql(target)) => target,
        Ok(other) => panic!("{input}: parsed as {}", other.backend_name()),
        Err(error) => panic!("{input}: {error}"),
    }
}

#[test]
fn target_debug_hides_password() {
    for input in [
        GOOD_DOTNET,
        "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
        "mysql://ally:S3cr3t%2DPl4nt@db.example.com/ally",
    ] {
        let target = mysql_target(input);
        let debug = format!("{target:?}");
        assert!(!debug.contains(PASSWORD), "{input}: {debug}");
        assert!(debug.contains("REDACTED"), "{input}: {debug}");
        let wrapped = format!("{:?}", DatabaseUrl::Mysql(target));
        assert!(!wrapped.contains(PASSWORD), "{input}: {wrapped}");
    }
}

#[test]
fn redacted_hides_password() {
    let target = mysql_target(&format!("{GOOD_DOTNET};SslMode=VerifyFull"));
    assert_eq!(
        target.redacted(),
        "mysql://ally:****@db.example.com:3306/ally?sslmode=VerifyFull"
    );
    let url = DatabaseUrl::Mysql(target);
    assert!(!url.redacted().contains(PASSWORD));
    assert_eq!(url.backend_name(), "mysql");
}

#[test]
fn redacted_without_password() {
    let target = mysql_target("mysql://ally@[::1]:3307/ally");
    assert_eq!(
        target.redacted(),
        "mysql://ally@[::1]:3307/ally?sslmode=Preferred"
    );
}

#[test]
fn redacted_round_trip() {
    let input = "Server=fe80::1;Port=3310;User ID='a l@y';Password=S3cr3t-Pl4nt;\
                 Database=db/x+y;SslMode=VerifyCA;SslCa=/etc/ca+1.pem;SslCert=c d.pem;\
                 SslKey=k.pem;Connect Timeout=7";
    let original = mysql_target(input);
    let redacted = original.redacted();
    assert!(!redacted.contains(PASSWORD), "{redacted}");

    let reparsed = mysql_target(&redacted.replace(":****@", "@"));
    assert_eq!(reparsed.host, original.host);
    assert_eq!(reparsed.port, original.port);
    assert_eq!(reparsed.user, original.user);
    assert!(reparsed.password.is_none());
    assert_eq!(reparsed.database, original.database);
    assert_eq!(reparsed.ssl_mode, original.ssl_mode);
    assert_eq!(reparsed.ssl_ca, original.ssl_ca);
    assert_eq!(reparsed.ssl_cert, original.ssl_cert);
    assert_eq!(reparsed.ssl_key, original.ssl_key);
    assert_eq!(reparsed.connect_timeout, original.connect_timeout);
}

#[test]
fn sqlite_redacted_round_trip() {
    for input in [
        "sqlite::memory:",
        "sqlite://data/my%20db%3F.db",
        "sqlite:///var/lib/ally.db",
    ] {
        let Ok(DatabaseUrl::Sqlite(original)) = DatabaseUrl::parse(input) else {
            panic!("{input}: not parsed as SQLite");
        };
        let redacted = DatabaseUrl::Sqlite(original.clone()).redacted();
        let Ok(DatabaseUrl::Sqlite(reparsed)) = DatabaseUrl::parse(&redacted) else {
            panic!("{redacted}: not parsed as SQLite");
        };
        assert_eq!(reparsed.path, original.path, "{input}");
    }
    let memory = DatabaseUrl::parse("sqlite::memory:").expect("in-memory URL");
    assert_eq!(memory.backend_name(), "sqlite");
}

#[test]
fn error_display_format() {
    let error = DatabaseUrl::parse("Server=h;Port=abc;User ID=u;Database=d")
        .expect_err("port `abc` is invalid");
    assert_eq!(
        error.to_string(),
        "invalid DATABASE_URL: key `Port`: port must be a number from 1 to 65535, got `abc`"
    );

    let error = DatabaseUrl::parse("").expect_err("empty input is invalid");
    assert!(error.key().is_none());
    assert!(
        error
            .to_string()
            .starts_with("invalid DATABASE_URL: the value is empty"),
        "{error}"
    );
}

#[test]
fn error_short_password_keeps_key() {
    let error = DatabaseUrl::parse("mysql://u:b@h:abc/db").expect_err("port `abc`");
    assert_eq!(error.key(), Some("port"));
    let message = error.to_string();
    assert!(message.contains("port must be a number"), "{message}");
    assert!(!message.contains("abc"), "{message}");
}

#[test]
fn error_echo_truncated() {
    let long_mode = "x".repeat(100);
    let input = format!("Server=h;User ID=u;Database=d;SslMode={long_mode}");
    let error = DatabaseUrl::parse(&input).expect_err("unknown SSL mode");
    let message = error.to_string();
    assert!(
        message.contains(&format!("`{}...`", "x".repeat(40))),
        "{message}"
    );
    assert!(!message.contains(&"x".repeat(41)), "{message}");
}

#[test]
fn from_str_matches_parse() {
    let parsed: DatabaseUrl = GOOD_DOTNET.parse().expect("valid connection string");
    assert_eq!(parsed.backend_name(), "mysql");
    let error = "postgres://x"
        .parse::<DatabaseUrl>()
        .expect_err("unknown scheme");
    assert!(error.to_string().contains("postgres"), "{error}");
}

#[test]
fn ssl_mode_display() {
    let names = [
        (SslMode::None, "None"),
        (SslMode::Preferred, "Preferred"),
        (SslMode::Required, "Required"),
        (SslMode::VerifyCa, "VerifyCA"),
        (SslMode::VerifyFull, "VerifyFull"),
    ];
    for (mode, name) in names {
        assert_eq!(mode.to_string(), name);
        assert_eq!(name.parse::<SslMode>().expect(name), mode);
    }
}

#[test]
fn ssl_mode_from_str() {
    assert_eq!(
        "verify_identity".parse::<SslMode>().ok(),
        Some(SslMode::VerifyFull)
    );
    assert_eq!("DISABLED".parse::<SslMode>().ok(), Some(SslMode::None));
    let error = "strict".parse::<SslMode>().expect_err("unknown mode");
    assert!(error.key().is_none());
    assert!(error.to_string().contains("got `strict`"), "{error}");
}

#[test]
fn ssl_mode_order() {
    assert!(SslMode::None < SslMode::Preferred);
    assert!(SslMode::Preferred < SslMode::Required);
    assert!(SslMode::Required < SslMode::VerifyCa);
    assert!(SslMode::VerifyCa < SslMode::VerifyFull);
    assert_eq!(SslMode::default(), SslMode::Preferred);
}
