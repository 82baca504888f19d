{#- Normalisation shared by every source that carries contact data (CRM, shop, later support,
    e-mail, social): the same rule must apply everywhere or identity matching breaks. -#}

{#- Full-width ASCII (U+FF01..U+FF5E) and the ideographic space to their half-width forms: the
    part of Unicode NFKC that matters for e-mails, phones and postal codes. -#}
{% macro to_halfwidth(expr) -%}
    translate(
        {{ expr }},
        '　！＂＃＄％＆＇（）＊＋，－．／０１２３４５６７８９：；＜＝＞？＠ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ［＼］＾＿｀ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ｛｜｝～',
        ' !"#$%&''()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefghijklmnopqrstuvwxyz{|}~'
    )
{%- endmacro %}

{#- Trimmed, half-width, lower-case e-mail; NULL when empty. -#}
{% macro normalise_email(expr) -%}
    nullif(lower(trim({{ to_halfwidth(expr) }})), '')
{%- endmacro %}

{#- Japanese phone number to E.164: +81 and the number without its domestic leading 0. Accepts
    090-1234-5678, 09012345678, +81-90-1234-5678, +81 (0)90..., full-width digits. NULL when it is
    not a 10 or 11 digit domestic number. -#}
{% macro normalise_phone_jp(expr) -%}
    {%- set text = "trim(" ~ to_halfwidth(expr) ~ ")" -%}
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
    {%- set digits = "regexp_replace(" ~ to_halfwidth(expr) ~ ", '[^0-9]', '', 'g')" -%}
    case
        when length({{ digits }}) = 7 then substr({{ digits }}, 1, 3) || '-' || substr({{ digits }}, 4, 4)
    end
{%- endmacro %}

{#- Text with the ideographic space folded, trimmed, NULL when empty (names, free text). -#}
{% macro clean_text(expr) -%}
    nullif(trim(replace({{ expr }}, '　', ' ')), '')
{%- endmacro %}

{#- A timestamp with offset (ISO 8601) as a UTC timestamp. -#}
{% macro to_utc(expr) -%}
    cast(cast({{ expr }} as timestamptz) at time zone 'UTC' as timestamp)
{%- endmacro %}
