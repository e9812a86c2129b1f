//! The console's two languages: which one a request wants, and the
//! Portuguese of the rules carteiro's checks state in English.

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    PtBr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::PtBr];

    /// The BCP 47 tag, as in `<html lang>` and the language cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::PtBr => "pt-BR",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.tag().eq_ignore_ascii_case(tag))
    }

    /// The preferred language of an `Accept-Language` header: any Portuguese
    /// counts as pt-BR; English when nothing we speak is asked for.
    pub fn negotiate(accept_language: &str) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for item in accept_language.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("pt") => Self::PtBr,
                Some("en") => Self::En,
                _ => continue,
            };
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map(|(_, lang)| lang).unwrap_or_default()
    }

    /// A validation message (carteiro's checks state them in English) in this language.
    pub fn rule(self, message: &str) -> String {
        match self {
            Self::En => message.to_owned(),
            Self::PtBr => rule_in_portuguese(message),
        }
    }
}

/// The English phrases of the checks' messages and their Portuguese, longest
/// first where one contains another. What is not listed (a value quoted
/// back, a server's words) stays as it is.
const PHRASES: &[(&str, &str)] = &[
    (" is not a valid e-mail address (", " não é um endereço de e-mail válido ("),
    ("it has no @", "falta o @"),
    ("longer than 254 octets", "mais de 254 octetos"),
    (
        "spaces, angle brackets and control characters are not allowed",
        "espaços, < > e caracteres de controle não são permitidos",
    ),
    (
        "the part before @ must be ASCII letters, digits and symbols",
        "a parte antes do @ deve ter letras ASCII, dígitos e símbolos",
    ),
    ("the domain is not a valid domain name", "o domínio não é um nome de domínio válido"),
    (" must not be empty", " não pode ficar vazio"),
    (" must be a host name or an IP address", " deve ser um nome de host ou um endereço IP"),
    (" must be a whole number", " deve ser um número inteiro"),
    (" must be one of ", " deve ser um destes: "),
    (" must be at most ", " deve ter no máximo "),
    (" must be at least ", " deve ter pelo menos "),
    (" characters long", " caracteres"),
    (" characters", " caracteres"),
    (" bytes", " bytes"),
    (" must not contain line breaks or NUL characters", " não pode conter quebras de linha nem caracteres NUL"),
    (
        " must not hold a user name or password: put them in client_id and client_secret",
        " não pode conter usuário nem senha: coloque-os em client_id e client_secret",
    ),
    (
        " is required when specific e-mail sending is enabled",
        " é obrigatório quando o envio de e-mail específico está habilitado",
    ),
    (" is required when authentication is enabled", " é obrigatório quando a autenticação está habilitada"),
    (" is required when the default sender is enabled", " é obrigatório quando o remetente padrão está habilitado"),
    (" is required with the pickup transport", " é obrigatório com o transporte pickup"),
    (
        ": the server or user name changed, so the stored one is not used for it",
        ": o servidor ou o usuário mudou, então o valor guardado não vale para ele",
    ),
    (" and none is stored", " e nenhum está guardado"),
    (" is required ", " é obrigatório "),
    (": only a platform administrator may ", ": somente um administrador da plataforma pode "),
    (
        "choose the sendmail or pickup transport: they run a program or write files on the carteiro host",
        "escolher o transporte sendmail ou pickup: eles executam um programa ou gravam arquivos no servidor do carteiro",
    ),
    (
        "set connection.sendmail_command: it is a program carteiro runs on its host",
        "definir connection.sendmail_command: é um programa que o carteiro executa no servidor dele",
    ),
    (
        "set connection.pickup_dir: carteiro writes files into that directory on its host",
        "definir connection.pickup_dir: o carteiro grava arquivos nesse diretório do servidor dele",
    ),
    (
        "set a connection.oauth.token_url that is not https://: plain http reaches ports on the carteiro host",
        "definir uma connection.oauth.token_url que não é https://: http simples alcança portas no servidor do carteiro",
    ),
    (" must be an absolute path", " deve ser um caminho absoluto"),
    (" must be an https:// URL", " deve ser uma URL https://"),
    (" must be an address or 'Name <address>'", " deve ser um endereço ou 'Nome <endereço>'"),
    (
        " must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        " deve ter de 2 a 63 caracteres entre a-z, 0-9 e '-', começando por letra ou dígito",
    ),
    (
        " must be 1 to 128 characters without spaces, '/', '?' or '#'",
        " deve ter de 1 a 128 caracteres, sem espaços, '/', '?' ou '#'",
    ),
    (
        " must be 1 to 64 characters of letters, digits, '.', '_', '@' and '-'",
        " deve ter de 1 a 64 caracteres entre letras, dígitos, '.', '_', '@' e '-'",
    ),
    (" cannot be read: ", " não pode ser lido: "),
    (", got ", "; recebido "),
];

fn rule_in_portuguese(message: &str) -> String {
    let mut out = message.to_owned();
    // "between A and B": the "and" is translated only there.
    if let Some(at) = out.find(" must be between ") {
        let rest = out[at..].replacen(" must be between ", " deve estar entre ", 1).replacen(" and ", " e ", 1);
        out.replace_range(at.., &rest);
    }
    for (en, pt) in PHRASES {
        out = out.replace(en, pt);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_language_we_speak() {
        assert_eq!(Lang::negotiate("pt-BR,pt;q=0.9,en;q=0.8"), Lang::PtBr);
        assert_eq!(Lang::negotiate("pt-PT"), Lang::PtBr);
        assert_eq!(Lang::negotiate("en-US,pt;q=0.5"), Lang::En);
        assert_eq!(Lang::negotiate("de-DE,pt;q=0.3,en;q=0.2"), Lang::PtBr);
        assert_eq!(Lang::negotiate("fr"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("pt;q=0"), Lang::En);
    }

    #[test]
    fn rules_read_in_portuguese() {
        let pt = Lang::PtBr;
        assert_eq!(
            pt.rule("timeout_s must be between 10 and 180, got 5"),
            "timeout_s deve estar entre 10 e 180; recebido 5"
        );
        assert_eq!(
            pt.rule("policy.default_sender_address is not a valid e-mail address (it has no @), got \"x\""),
            "policy.default_sender_address não é um endereço de e-mail válido (falta o @); recebido \"x\""
        );
        assert_eq!(
            pt.rule("connection.host is required when specific e-mail sending is enabled"),
            "connection.host é obrigatório quando o envio de e-mail específico está habilitado"
        );
        assert_eq!(Lang::En.rule("port must be between 1 and 65535, got 0"), "port must be between 1 and 65535, got 0");
    }
}
