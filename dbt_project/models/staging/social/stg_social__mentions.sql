with

source as (
    {{ latest_version(source('social', 'social_mentions'), 'mention_id') }}
),

renamed as (
    select
        mention_id,
        platform,
        lower(trim(handle)) as handle,
        {{ normalise_email('email') }} as email,
        sentiment,
        case sentiment when 'positive' then 1 when 'neutral' then 0 when 'negative' then -1 end
            as sentiment_score,
        cast(rating as integer) as rating,
        {{ clean_text('text') }} as post_text,
        {{ to_utc('posted_at') }} as posted_at,
    from source
)

select * from renamed
