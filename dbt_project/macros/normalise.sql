{#- Normalisation shared by every source that carries contact data (CRM, shop, later support,
    e-mail, social): the same rule must apply everywhere or identity matching breaks. -#}

{#- Unicode NFKC for the text Japanese systems produce: full-width ASCII (Ａ１＠) and the
    ideographic space to ASCII, half-width katakana (ｻﾄｳ, ｶﾞ) to full-width (サトウ, ガ). The
    translate maps each character to its NFKC form (voiced marks to combining marks) and
    nfc_normalize composes them; DuckDB has no NFKC function of its own. translate costs ~3 µs
    a row, so it only runs on text holding a character it maps (U+3000, U+FF01-U+FF9F); on any
    other text it would change nothing. -#}
{% macro nfkc(expr) -%}
    case when regexp_matches({{ expr }}, '[\x{3000}\x{FF01}-\x{FF9F}]') then nfc_normalize(translate(
        {{ expr }},
        '！＂＃＄％＆＇（）＊＋，－．／０１２３４５６７８９：；＜＝＞？＠ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ［＼］＾＿｀ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ｛｜｝～　｡｢｣､･ｦｧｨｩｪｫｬｭｮｯｰｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜﾝﾞﾟ',
        '!"#$%&''()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefghijklmnopqrstuvwxyz{|}~ 。「」、・ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン゙゚'
    )) else nfc_normalize({{ expr }}) end
{%- endmacro %}

{#- NFKC, trimmed, lower-case e-mail; NULL when empty. -#}
{% macro normalise_email(expr) -%}
    nullif(lower(trim({{ nfkc(expr) }})), '')
{%- endmacro %}

{#- Japanese phone number to E.164: +81 and the number without its domestic leading 0. Accepts
    090-1234-5678, 09012345678, +81-90-1234-5678, +81 (0)90..., full-width digits. NULL when it is
    not a 10 or 11 digit domestic number. -#}
{% macro normalise_phone_jp(expr) -%}
    {%- set text = "trim(" ~ nfkc(expr) ~ ")" -%}
    {%- set digits = "regexp_replace(" ~ text ~ ", '[^0-9]', '', 'g')" -%}
    case
        when starts_with({{ text }}, '+') and regexp_matches({{ digits }}, '^81[1-9][0-9]{8,9}$')
            then '+' || {{ digits }}
        when starts_with({{ text }}, '+') and regexp_matches({{ digits }}, '^810[1-9][0-9]{8,9}$')
            then '+81' || substr({{ digits }}, 4)
        when not starts_with({{ text }}, '+') and regexp_matches({{ digits }}, '^0[1-9][0-9]{8,9}$')
            then '+81' || substr({{ digits }}, 2)
    end
{%- endmacro %}

{#- Postal code to NNN-NNNN (1500002, 150-0002, 〒150-0002, full-width digits); NULL otherwise. -#}
{% macro normalise_postal_code_jp(expr) -%}
    {%- set digits = "regexp_replace(" ~ nfkc(expr) ~ ", '[^0-9]', '', 'g')" -%}
    case
        when length({{ digits }}) = 7 then substr({{ digits }}, 1, 3) || '-' || substr({{ digits }}, 4, 4)
    end
{%- endmacro %}

{#- Text in NFKC, trimmed, NULL when empty (names, kana readings, free text). -#}
{% macro clean_text(expr) -%}
    nullif(trim({{ nfkc(expr) }}), '')
{%- endmacro %}

{#- A timestamp with offset (ISO 8601) as a UTC timestamp. -#}
{% macro to_utc(expr) -%}
    cast(cast({{ expr }} as timestamptz) at time zone 'UTC' as timestamp)
{%- endmacro %}
